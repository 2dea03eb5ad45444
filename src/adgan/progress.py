"""The one progress-bar helper: a tqdm bar where asked for, else an object that does
nothing, so callers need no ``if bar is not None``."""

from __future__ import annotations

from typing import Any


class _Silent:
    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


_SETTINGS: dict[str, Any] = {"position": None, "prefix": ""}


def configure(position: int | None = None, lock: Any = None, prefix: str | None = None) -> None:
    """For a process that runs beside others (``evaluate --jobs``): its bars on line
    ``position``, drawn under the processes' shared ``lock``, their names after ``prefix``."""
    if position is not None:
        _SETTINGS["position"] = position
    if lock is not None:
        from tqdm.auto import tqdm

        tqdm.set_lock(lock)
    if prefix is not None:
        _SETTINGS["prefix"] = prefix


def progress_bar(enabled: bool, total: int, desc: str, unit: str, initial: int = 0):
    """A context manager and bar with ``update``, ``set_postfix``, ``set_postfix_str`` and
    ``close``: tqdm's when ``enabled``, a silent one otherwise."""
    if not enabled:
        return _Silent()
    from tqdm.auto import tqdm

    position = _SETTINGS["position"]
    return tqdm(
        total=total,
        desc=_SETTINGS["prefix"] + desc,
        unit=unit,
        initial=initial,
        position=position,
        leave=position is None,
    )
