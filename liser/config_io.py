"""Configs to and from dicts and YAML files, ``--set`` overrides and dotted-key replacement.

Generic over the frozen dataclasses of ``config.py`` (which re-exports these functions).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any

import yaml

from .config_rules import ConfigError, coerce_value


def to_dict(config: Any) -> dict:
    """A plain dict (tuples as lists) of a config dataclass, ready for YAML or JSON."""

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def from_dict(cls: type, data: dict | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from a dict, rejecting unknown keys with the nearest valid name."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown key '{where}{key}'{hint}")
        kwargs[key] = coerce_value(hints[key], value, f"{where}{key}", from_dict)
    try:
        return cls(**kwargs)
    except ConfigError as error:
        if not error.key:
            raise
        key = f"{where}{error.key}"
        raise ConfigError(
            f"'{key}' {error.problem}, got {error.value!r}", key, error.problem, error.value
        ) from None


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_config(cls: type, path: str | Path | None = None, overrides=()) -> Any:
    """Read a YAML file (or nothing: defaults) into ``cls``, then apply ``--set`` overrides."""
    data: dict = {}
    if path is not None:
        text = Path(path).read_text()
        try:  # safe_load: tags that build Python objects are errors, never run
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not a valid YAML config ({error})") from error
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config file must be a YAML mapping")
    apply_overrides(data, list(overrides))
    return from_dict(cls, data)


def save_config(config: Any, path: str | Path) -> None:
    """Write a config as YAML (atomically)."""
    from .files import atomic_write

    atomic_write(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def replace(config: Any, **changes) -> Any:
    """``dataclasses.replace`` with dotted keys: ``replace(cfg, **{"optim.lr": 1e-3})``."""
    data = to_dict(config)
    for key, value in changes.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                sections = [k for k, v in node.items() if isinstance(v, dict)]
                close = difflib.get_close_matches(part, sections, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ConfigError(f"unknown key '{key}': no section '{part}'{hint}")
            node = node[part]
        node[last] = value
    return from_dict(type(config), data)
