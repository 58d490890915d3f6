"""Dataclass configs loaded from YAML: unknown keys and wrong types are errors, dotted overrides work.

    cfg = load_config(TrainConfig, "configs/tiny-smoke.yaml", overrides=["optim.lr=1e-4", "max_steps=50"])
    save_config(cfg, run_dir / "config.yaml")

Types are checked against the dataclass annotations (int, float, str, bool, tuples, lists, ``X | None``,
``Literal[...]`` and nested dataclasses). An int is accepted where a float is expected.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

__all__ = ["ConfigError", "apply_overrides", "config_to_dict", "from_dict", "load_config", "save_config"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config has an unknown key, a value of the wrong type, or a malformed override."""


def _unyaml_bool(value: Any, options: tuple) -> Any:
    """YAML 1.1 reads ``no``/``off`` as False and ``yes``/``on`` as True; give a string choice such as
    ``mixed_precision: no`` back its word when exactly one option spells that boolean."""
    if not isinstance(value, bool) or any(isinstance(o, bool) for o in options):
        return value
    words = ("yes", "on", "true") if value else ("no", "off", "false")
    spelled = [o for o in options if isinstance(o, str) and o.lower() in words]
    return spelled[0] if len(spelled) == 1 else value


def _check(value: Any, annotation: Any, where: str) -> Any:
    origin = get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{where}: unexpected None")
    if origin is Literal:
        value = _unyaml_bool(value, get_args(annotation))
        if value not in get_args(annotation):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(annotation))}")
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {annotation.__name__} fields, got {value!r}")
        return from_dict(annotation, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            items = [_check(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            item_type = args[0] if args else Any
            items = [_check(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_type, value_type = get_args(annotation) or (Any, Any)
        return {_check(k, key_type, where): _check(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and checking types."""
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + u for u in unknown)}; valid keys here: {', '.join(names)}"
        )
    kwargs = {}
    for item in dataclasses.fields(cls):
        if item.name in data:
            value = data[item.name]
            default = _default(item)
            if dataclasses.is_dataclass(hints[item.name]) and isinstance(value, dict) and default is not None:
                value = _merge(config_to_dict(default), value)  # a partial section keeps the field's own defaults
            kwargs[item.name] = _check(value, hints[item.name], f"{where}.{item.name}" if where else item.name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where or cls.__name__}: {error}") from error


def _default(item: dataclasses.Field) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return None


def _merge(base: dict, update: dict) -> dict:
    """``update`` over ``base``, section by section."""
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def config_to_dict(config: Any) -> dict:
    """A dataclass config as plain YAML-able data (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested mapping, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return data


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> T:
    """Read YAML (or start from the defaults when ``path`` is None), apply overrides, validate."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    return from_dict(cls, apply_overrides(data, list(overrides)))


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False), encoding="utf-8")
