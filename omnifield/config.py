"""Typed config dataclasses, a registry by name, and JSON (de)serialisation.

Every buildable component (encoding, decoder, field, ...) has a dataclass
config registered under a short ``type`` name. ``config_to_dict`` writes the
config tree as plain JSON-able dicts, each nested config tagged with its
``type``; ``config_from_dict`` rebuilds the exact dataclasses, so a checkpoint
re-opens without code changes.

Example::

    @register_config("frequency")
    @dataclass
    class FrequencyConfig:
        n_frequencies: int = 10

    d = config_to_dict(FrequencyConfig(6))   # {"type": "frequency", "n_frequencies": 6}
    cfg = config_from_dict(d)                # FrequencyConfig(n_frequencies=6)
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, TypeVar

from omnifield.errors import OmnifieldError

T = TypeVar("T")

_CONFIG_TYPES: dict[str, type] = {}


def register_config(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: register a dataclass config under ``name``."""

    def wrap(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} must be a dataclass to be registered")
        if name in _CONFIG_TYPES and _CONFIG_TYPES[name] is not cls:
            raise ValueError(f"config type name {name!r} registered twice")
        _CONFIG_TYPES[name] = cls
        cls.type_name = name  # type: ignore[attr-defined]
        return cls

    return wrap


def import_plugins(modules: list[str]) -> None:
    """Import each module of ``modules`` that exists, so that it registers its configs, presets or solvers.

    A module that is absent is skipped; an import error inside a module that exists is raised.
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def registered_config_types() -> dict[str, type]:
    """All registered config classes by type name (a copy)."""
    return dict(_CONFIG_TYPES)


def config_to_dict(cfg: Any) -> Any:
    """Serialise a config tree (dataclasses, lists, tuples, scalars) to JSON-able data."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        name = getattr(type(cfg), "type_name", None)
        if name is None:
            raise TypeError(f"{type(cfg).__name__} is not a registered config")
        out: dict[str, Any] = {"type": name}
        for f in dataclasses.fields(cfg):
            out[f.name] = config_to_dict(getattr(cfg, f.name))
        return out
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {str(k): config_to_dict(v) for k, v in cfg.items()}
    if cfg is None or isinstance(cfg, (bool, int, float, str)):
        return cfg
    raise TypeError(f"cannot serialise config value of type {type(cfg).__name__}")


def _check_scalar_type(value: Any, default: Any, where: str) -> None:
    """A value whose field has a bool/int/float/str default must have that kind (an int may stand for a float)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        return
    if not ok:
        raise OmnifieldError(f"{where}: expected {type(default).__name__}, got {value!r}")


def config_from_dict(data: Any, where: str = "config") -> Any:
    """Rebuild a config tree written by :func:`config_to_dict`.

    Raises :class:`OmnifieldError` naming ``where`` on unknown types or keys.
    """
    if isinstance(data, list):
        return [config_from_dict(v, f"{where}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, dict):
        return data
    if "type" not in data:
        return {k: config_from_dict(v, f"{where}.{k}") for k, v in data.items()}
    name = data["type"]
    cls = _CONFIG_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        known = ", ".join(sorted(_CONFIG_TYPES))
        raise OmnifieldError(f"{where}: unknown config type {name!r} (known: {known})")
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "type":
            continue
        if key not in names:
            raise OmnifieldError(f"{where}: unknown key {key!r} for config type {name!r}")
        value = config_from_dict(value, f"{where}.{key}")
        default = names[key].default
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        _check_scalar_type(value, default, f"{where}.{key}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise OmnifieldError(f"{where}: invalid {name!r} config: {exc}") from None


def replace_config(cfg: T, **changes: Any) -> T:
    """A copy of ``cfg`` with ``changes`` applied (``dataclasses.replace``)."""
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]
