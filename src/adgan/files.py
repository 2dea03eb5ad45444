"""Everything that reads or writes the package's files, in one place.

* ``atomic_write``, ``atomic_torch_save``: a file is replaced whole or not at all;
* ``safe_torch_load``: ``torch.load(weights_only=True)`` (tensors, numbers and strings:
  loading never runs code), every failure a one-line error naming the file;
* ``header`` / ``check_header``: the format name and the version written into each file;
* ``load_state``: a module's weights read from a file, checked against its architecture;
* ``write_csv``, ``csv_text``: a CSV file written atomically, its text cells safe to open
  in a spreadsheet; ``complete_rows``: a CSV file read back after an interruption;
* ``read_json_object``: a settings file read back, checked;
* ``fingerprint``: a digest identifying data or settings;
* ``differences``: which settings differ from those a folder was made with;
* ``exclusive``: a lock file held while a process writes an output (concurrent writers).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from adgan.errors import AdganError, CheckpointError, DataError
from adgan.version import __version__


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call write(binary file handle) on a temporary file beside path, flush it to disk,
    then rename it into place: readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        mask = os.umask(0)  # mkstemp makes owner-only files: give them the usual mode
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=1)
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def read_json_object(path: str | os.PathLike, what: str) -> dict:
    """A JSON object (dict) from ``path``; anything else, or text that is not JSON, is a
    one-line DataError naming the file and ``what`` it should hold."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise DataError(f"{path}: not a readable {what} ({str(exc)[:120]})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a {what} (expected a JSON object)")
    return obj


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file beside ``path``, then rename: never a half-written file."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def safe_torch_load(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """torch.load with weights_only=True, turning every failure into a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or holding code objects
        text = str(exc).strip()
        unpickling = isinstance(exc, pickle.UnpicklingError) or "weights only" in text.lower()
        if unpickling and not re.search(r"global|class|reduce|build", text, re.IGNORECASE):
            # not a pickle at all (a text file, another format): say so, not "code"
            raise CheckpointError(
                f"{path}: not a readable adgan {what}: not in torch.save's format, or damaged"
            ) from exc
        if unpickling:
            # never pass on torch's advice to load the file with weights_only=False
            found = re.search(r"GLOBAL ([\w.]+)", text)
            what_in = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"{path}: refused: the file holds objects other than tensors, numbers and "
                f"strings{what_in}, which could run code when loaded; not an adgan {what}"
            ) from exc
        try:
            with open(path, "rb") as fh:
                magic = fh.read(4)
        except OSError:  # unreadable: the message below names torch's error
            magic = b"PK\x03\x04"
        if magic != b"PK\x03\x04":  # torch.save writes a zip archive; this is something else
            kind = "an empty file" if not magic else "not in torch.save's format, or damaged"
            raise CheckpointError(f"{path}: not a readable adgan {what}: {kind}") from exc
        first = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable adgan {what}, damaged or truncated ({first[:200]})"
        ) from exc


def header(fmt: str) -> dict[str, str]:
    """The first entries of every file the package writes: its format and our version."""
    return {"format": fmt, "adgan_version": __version__}


def check_header(blob: Any, fmt: str, path: str | os.PathLike, what: str, hint: str = "") -> None:
    """CheckpointError unless ``blob`` (from ``safe_torch_load``) is a file of format
    ``fmt``."""
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise CheckpointError(f"{path}: not an adgan {what} (no '{fmt}' header){hint}")


def load_state(module: torch.nn.Module, state: dict, path: Any, what: str) -> None:
    """``module.load_state_dict(state)``, a mismatch being a one-line CheckpointError that
    names the file (``path``) and the part (``what``)."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"{path}: the {what} weights do not fit the architecture in the file or the one "
            f"asked for ({first[:160]})"
        ) from exc


#: a spreadsheet reads a cell starting with one of these as a formula (and "'" as a quote)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_text(text: str) -> str:
    """A file name or message as a CSV cell that a spreadsheet shows as text: one starting
    with ``= + - @``, a tab, a carriage return or ``'`` gets a leading ``'``
    (``csv_untext`` takes it off again)."""
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_untext(cell: str) -> str:
    """The text ``csv_text`` made ``cell`` from."""
    return cell[1:] if cell.startswith("'") else cell


def write_csv(path: str | os.PathLike, fields: list[str], rows: Iterable[Iterable]) -> Path:
    """A CSV file with a header row, written atomically; text is UTF-8, and file names that
    are not (bytes of another encoding) are written back as the same bytes. Callers pass
    file names and messages through ``csv_text``."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(fields)
    w.writerows(rows)
    data = buf.getvalue().encode("utf-8", "surrogateescape")
    return atomic_write(path, lambda fh: fh.write(data))


def complete_rows(path: str | os.PathLike) -> list[dict]:
    """CSV rows of ``path`` without a last line cut short by an interruption (one that does
    not end in a newline), so a half-written number is never taken for a finished row."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    return [r for r in rows if None not in r.values() and None not in r]


def fingerprint(*parts: Any) -> str:
    """SHA-1 (hex) of the parts in order: strings by their UTF-8 bytes, arrays and tensors
    by their values' bytes (C order; include the shape and dtype as a string part where
    they matter), dicts as their keys (as strings) and values in order. It identifies
    training images in a GAN checkpoint (shape, then values) and a detector in a ranking
    folder, so that work is never resumed on other data or with another model."""
    h = hashlib.sha1()

    def add(p: Any) -> None:
        if isinstance(p, torch.Tensor):
            p = p.detach().cpu().contiguous().numpy()
        if isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p))  # the buffer itself: no copy of the bytes
        elif isinstance(p, str):
            h.update(p.encode())
        elif isinstance(p, dict):
            for k, v in p.items():
                add(str(k))
                add(v)
        else:
            raise TypeError(f"fingerprint: cannot digest a {type(p).__name__}")

    for p in parts:
        add(p)
    return h.hexdigest()


def as_json(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples as lists, other objects as strings)."""
    return json.loads(json.dumps(obj, default=str))


def differences(
    before: dict, now: dict, defaults: dict | None = None, ignore: Iterable[str] = ()
) -> list[str]:
    """The sorted keys whose values differ between settings ``before`` (what a folder or
    file was made with) and ``now``, compared as JSON. With ``defaults``, only its keys
    count, and a key given on one side only counts at its default there."""
    before, now = as_json(before), as_json(now)
    skip = set(ignore)
    if defaults is None:
        keys = set(before) | set(now)
        return sorted(k for k in keys - skip if before.get(k) != now.get(k))
    defaults = as_json(defaults)
    keys = (set(before) | set(now)) & set(defaults)
    return sorted(k for k in keys - skip if before.get(k, defaults[k]) != now.get(k, defaults[k]))


class Locked(AdganError):
    """Another process holds the lock of an output file or folder."""


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock (``fcntl.flock``) on the file ``path`` (created, left in place)
    for the block; without ``wait``, a lock held by another process is a one-line ``Locked``
    error at once, naming the lock file, ``what`` is locked and the holder's process id.
    Where ``fcntl`` is missing (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise Locked(
                f"{path}: locked by another adgan process (pid {holder}) writing {what}; "
                "wait for it to finish or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
