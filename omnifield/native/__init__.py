"""Native CPU kernels (C++/OpenMP), compiled on first use and cached.

Each kernel family is one ``<name>.cpp`` file in this folder with its own
``PYBIND11_MODULE``. :func:`load_native` builds it with
``torch.utils.cpp_extension.load`` (ninja, ``-O3 -fopenmp``) into
``$OMNIFIELD_CACHE`` (default ``~/.cache/omnifield/native``; one folder per kernel, checkout
and Python environment) and returns the module, or ``None`` with a one-line warning when no
compiler is available; the callers then fall back to their pure-torch twins.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import torch

_HERE = Path(__file__).resolve().parent


def cache_dir() -> Path:
    """Where compiled kernels live."""
    root = os.environ.get("OMNIFIELD_CACHE") or os.path.join(Path.home(), ".cache", "omnifield")
    return Path(root) / "native" / f"torch{torch.__version__.split('+')[0]}"


def _checkout_key() -> str:
    """Short digest of this source folder and Python environment: each checkout / virtualenv builds into
    its own folder (the build files name absolute paths, so two of them sharing one would rebuild in turn)."""
    return hashlib.sha1(f"{_HERE}|{sys.prefix}".encode()).hexdigest()[:10]


@lru_cache(maxsize=None)
def load_native(name: str) -> ModuleType | None:
    """Compile (once) and import the kernel family ``name`` (``<name>.cpp``); ``None`` if impossible."""
    if os.environ.get("OMNIFIELD_BACKEND", "").lower() == "torch":
        return None
    source = _HERE / f"{name}.cpp"
    if not source.exists():
        raise FileNotFoundError(f"no native source {source}")
    build_dir = cache_dir() / f"{name}-{_checkout_key()}"
    build_dir.mkdir(parents=True, exist_ok=True)
    try:
        from torch.utils.cpp_extension import load

        return load(
            name=f"omnifield_{name}",
            sources=[str(source)],
            extra_cflags=["-O3", "-fopenmp", "-march=native", "-ffast-math"],
            extra_ldflags=["-fopenmp"],
            build_directory=str(build_dir),
            verbose=False,
        )
    except Exception as exc:  # noqa: BLE001 - any build failure means "use the torch twin"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        warnings.warn(
            f"omnifield: native kernel {name!r} unavailable ({first}); using the slower pure-torch version",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
