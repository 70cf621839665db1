"""Field presets by name: ``"hashgrid"``, ``"mlp"`` (vanilla NeRF), and any backend that registers one.

A preset is a function returning a config whose ``build()`` makes the field.
Backends register themselves with :func:`register_field`; :func:`field_config`
looks one up, and :func:`build_field` builds any config (with a clear error).
"""

from __future__ import annotations

from typing import Any, Callable

from omnifield.config import import_plugins
from omnifield.errors import OmnifieldError
from omnifield.fields.frequency import FrequencyConfig
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.radiance import RadianceFieldConfig

_FIELDS: dict[str, Callable[[], Any]] = {}


def register_field(name: str, make_config: Callable[[], Any]) -> None:
    """Register a preset: ``make_config()`` returns a fresh config with a ``build()`` method."""
    _FIELDS[name] = make_config


def field_names() -> list[str]:
    """Names of all registered field presets."""
    _load_backends()
    return sorted(_FIELDS)


def field_config(name: str) -> Any:
    """A fresh config of preset ``name``; :class:`OmnifieldError` if unknown."""
    _load_backends()
    if name not in _FIELDS:
        raise OmnifieldError(f"unknown field {name!r}; choose from: {', '.join(sorted(_FIELDS))}")
    return _FIELDS[name]()


def build_field(cfg: Any):
    """Build the module of a field config, turning config errors into :class:`OmnifieldError`."""
    try:
        return cfg.build()
    except (ValueError, TypeError) as exc:
        raise OmnifieldError(f"invalid field config ({type(cfg).__name__}): {exc}") from None


def _load_backends() -> None:
    """Import optional backend modules so that they register their presets."""
    import_plugins(_BACKEND_MODULES)


# Modules that call register_field() at import time (added as backends land).
_BACKEND_MODULES: list[str] = ["omnifield.fields.triplane", "omnifield.fields.neurbf", "omnifield.fields.cam"]

register_field("hashgrid", lambda: RadianceFieldConfig(encoding=HashGridConfig()))
register_field(
    "mlp",
    lambda: RadianceFieldConfig(
        encoding=FrequencyConfig(n_frequencies=10),
        density_decoder=MLPConfig(width=128, n_hidden_layers=4),
        color_decoder=MLPConfig(width=64, n_hidden_layers=1),
    ),
)
