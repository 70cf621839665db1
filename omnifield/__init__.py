"""omnifield: neural fields and 3D reconstruction with interchangeable backends."""

from __future__ import annotations

import importlib
from typing import Any, Callable

__version__ = "0.1.0"


def lazy_exports(package: str, exports: dict[str, list[str]]) -> tuple[list[str], Callable[[str], Any]]:
    """``(__all__, __getattr__)`` for a package that re-exports ``exports`` (``module -> names``) lazily.

    ``from omnifield.renderers import Cameras`` imports ``omnifield.renderers.cameras`` on first use
    (PEP 562), so importing a package costs nothing and layers below it never import it back by accident.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return sorted(where), __getattr__
