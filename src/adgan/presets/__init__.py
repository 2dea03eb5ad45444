"""Presets are data: one TOML file each, holding a protocol and detector parameters."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from adgan.errors import ConfigError


@dataclass
class Preset:
    name: str
    description: str = ""
    dataset: str | None = None
    deviations: list[str] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # for every method
    method: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-method overrides

    def params_for(self, method: str) -> dict[str, Any]:
        out = {k: v for k, v in self.params.items() if not isinstance(v, dict)}
        out.update(self.method.get(method, {}))
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
            raise ConfigError(f"--preset: file {path} not found")
        text, name = path.read_text(), path.stem
    else:
        res = resources.files("adgan.presets") / f"{name_or_path}.toml"
        if not res.is_file():
            known = ", ".join(available_presets())
            raise ConfigError(f"--preset: unknown preset {name_or_path!r}; built in: {known}")
        text, name = res.read_text(), name_or_path
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--preset {name_or_path}: not valid TOML ({exc})") from exc
    unknown = set(data) - {"description", "dataset", "deviations", "protocol", "params", "method"}
    if unknown:
        raise ConfigError(f"--preset {name_or_path}: unknown keys {sorted(unknown)}")
    return Preset(name=name, **data)
