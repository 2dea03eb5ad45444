"""Presets are data: one TOML file each, holding a protocol and detector parameters.

A preset file has these tables, and nothing else:

* ``description``, ``dataset`` (the default dataset), ``deviations`` (from the paper);
* ``[protocol]``: ``n_test`` and ``n_train``;
* ``[params]``: parameters for every method (each method takes the ones it knows);
* ``[method.NAME]``: parameters for one registered method, over ``[params]``;
* ``[datasets.NAME]``: the same tables again (``deviations``, ``protocol``, ``params``,
  ``method``) for one dataset, applied over the rest when that dataset is run
  (``Preset.for_dataset``).

Every key is checked when the file is read: an unknown table, method or parameter, or a value
that the parameter does not accept (its type or range, as the detectors' ``param_constraints``
state them; ``adgan.params``), is an error that names the key, the file and what is accepted.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from adgan.errors import ConfigError

TOP_KEYS = ("description", "dataset", "deviations", "protocol", "params", "method", "datasets")
SECTION_KEYS = ("deviations", "protocol", "params", "method")
PROTOCOL_KEYS = {"n_test": int, "n_train": int}
DATASETS = ("digits", "mnist", "cifar10")


@dataclass
class Preset:
    name: str
    description: str = ""
    dataset: str | None = None
    deviations: list[str] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # for every method
    method: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-method overrides
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-dataset sections

    def params_for(self, method: str) -> dict[str, Any]:
        out = {k: v for k, v in self.params.items() if not isinstance(v, dict)}
        out.update(self.method.get(method, {}))
        return out

    def for_dataset(self, dataset: str | None) -> Preset:
        """This preset with the ``[datasets.<dataset>]`` section applied (a copy)."""
        out = copy.deepcopy(self)
        section = out.datasets.get(dataset or "", {})
        out.deviations = out.deviations + list(section.get("deviations", []))
        out.protocol = {**out.protocol, **section.get("protocol", {})}
        out.params = {**out.params, **section.get("params", {})}
        for m, p in section.get("method", {}).items():
            out.method[m] = {**out.method.get(m, {}), **p}
        return out


def available_presets() -> list[str]:
    return sorted(
        p.name[:-5] for p in resources.files("adgan.presets").iterdir() if p.name.endswith(".toml")
    )


def load_preset(name_or_path: str | None) -> Preset:
    """A built-in preset by name, or a TOML file by path; None gives an empty preset."""
    if name_or_path is None:
        return Preset(name="default")
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"preset: file {path} not found")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"preset: cannot read {path} as UTF-8 text ({exc})") from exc
        name, where = path.stem, str(path)
    else:
        res = resources.files("adgan.presets") / f"{name_or_path}.toml"
        if not res.is_file():
            known = ", ".join(available_presets())
            raise ConfigError(f"preset: unknown preset {name_or_path!r}; built in: {known}")
        text, name, where = res.read_text(), name_or_path, f"built-in preset {name_or_path}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"preset {where}: not valid TOML ({exc})") from exc
    check_preset(data, where)
    return Preset(name=name, **data)


def check_preset(data: dict, where: str) -> None:
    """Raise ConfigError for any key or value the preset format does not accept."""
    _keys(data, TOP_KEYS, where, "the top level")
    for key in ("description", "dataset"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"preset {where}: {key} must be a string")
    if data.get("dataset") is not None and data["dataset"] not in DATASETS:
        raise ConfigError(
            f"preset {where}: dataset {data['dataset']!r} unknown; accepted: " + ", ".join(DATASETS)
        )
    _section(data, where, "")
    datasets = data.get("datasets", {})
    if not isinstance(datasets, dict):
        raise ConfigError(f"preset {where}: [datasets] must hold tables [datasets.NAME]")
    for ds, section in datasets.items():
        if ds not in DATASETS:
            raise ConfigError(
                f"preset {where}: [datasets.{ds}]: unknown dataset; accepted: "
                + ", ".join(DATASETS)
            )
        if not isinstance(section, dict):
            raise ConfigError(f"preset {where}: [datasets.{ds}] must be a table")
        _keys(section, SECTION_KEYS, where, f"[datasets.{ds}]")
        _section(section, where, f"datasets.{ds}.")


def _keys(table: dict, accepted, where: str, what: str) -> None:
    for key in table:
        if key not in accepted:
            raise ConfigError(
                f"preset {where}: unknown key {key!r} in {what}; accepted: {', '.join(accepted)}"
            )


def _section(data: dict, where: str, prefix: str) -> None:
    from adgan.registry import DETECTORS, detector_params

    dev = data.get("deviations", [])
    if not (isinstance(dev, list) and all(isinstance(d, str) for d in dev)):
        raise ConfigError(f"preset {where}: {prefix}deviations must be a list of strings")
    protocol = _table(data, "protocol", where, prefix)
    for key, value in protocol.items():
        if key not in PROTOCOL_KEYS:
            raise ConfigError(
                f"preset {where}: unknown key {key!r} in [{prefix}protocol]; accepted: "
                + ", ".join(PROTOCOL_KEYS)
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"preset {where}: [{prefix}protocol] {key} must be a positive integer, "
                f"got {value!r}"
            )
    params = _table(data, "params", where, prefix)
    every: dict[str, Any] = {}
    for m in DETECTORS:
        every.update(detector_params(m))
    for key, value in params.items():
        if key not in every:
            raise ConfigError(
                f"preset {where}: unknown parameter {key!r} in [{prefix}params]; "
                f"no registered method takes it (accepted: {', '.join(sorted(every))})"
            )
        # the same name may mean different types to different methods: check against any
        takers = [m for m in DETECTORS if key in detector_params(m)]
        _check_value(key, value, takers, where, f"{prefix}params")
    methods = _table(data, "method", where, prefix)
    for m, table in methods.items():
        if m not in DETECTORS:
            raise ConfigError(
                f"preset {where}: unknown method [{prefix}method.{m}]; accepted: "
                + ", ".join(DETECTORS)
            )
        if not isinstance(table, dict):
            raise ConfigError(f"preset {where}: [{prefix}method.{m}] must be a table")
        accepted = detector_params(m)
        for key, value in table.items():
            if key not in accepted:
                raise ConfigError(
                    f"preset {where}: unknown parameter {key!r} in [{prefix}method.{m}]; "
                    f"accepted: {', '.join(sorted(accepted))}"
                )
            _check_value(key, value, [m], where, f"{prefix}method.{m}")


def _table(data: dict, key: str, where: str, prefix: str) -> dict:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"preset {where}: {prefix}{key} must be a table [{prefix}{key}]")
    return table


def _check_value(key: str, value: Any, methods: list[str], where: str, table: str) -> None:
    """The value must be one that at least one method taking ``key`` accepts (its
    ``param_constraints``)."""
    from adgan.registry import DETECTORS

    constraints = [DETECTORS[m][0].param_constraints[key] for m in methods]
    if any(c.accepts(value) for c in constraints):
        return
    phrases = list(dict.fromkeys(c.describe() for c in constraints))
    # "a number > 0" says nothing that "a number > 0 or None" does not
    phrases = [p for p in phrases if not any(o.startswith(p + " or ") for o in phrases)]
    want = " or ".join(phrases)
    raise ConfigError(f"preset {where}: [{table}] {key} must be {want}, got {value!r}")
