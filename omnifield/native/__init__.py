"""Native CPU kernels (C++/OpenMP), compiled on first use and cached.

Each kernel family is one ``<name>.cpp`` file in this folder with its own
``PYBIND11_MODULE``. :func:`load_native` builds it with
``torch.utils.cpp_extension.load`` (ninja, ``-O3 -fopenmp``) into
``$OMNIFIELD_CACHE/native/<name>-<key>`` (default ``~/.cache/omnifield``) and returns the module, or
``None`` with a one-line warning when no compiler is available; the callers then fall back to their
pure-torch twins (:func:`unavailable_reason` says why).

The key is a digest of everything the compiled file depends on: the source text, the flags, the torch and
Python ABI, the compiler and the CPU (``-march=native``), so a finished build is imported directly, without
ninja, by every checkout and environment that would build the same file. One process builds a folder at a
time, under an ``flock`` on ``<folder>.lock`` (the kernel releases it when its holder dies, however it
dies); a process that finds the folder half built (no ``built.json``, say after a kill during the first
compile) clears it and builds again, and says so. Waiting for another process prints one line, and gives up
(pure-torch twin) after :data:`WAIT_LIMIT_S`.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Iterator

import torch

_HERE = Path(__file__).resolve().parent
CFLAGS = ("-O3", "-fopenmp", "-march=native", "-ffast-math")
LDFLAGS = ("-fopenmp",)
WAIT_LIMIT_S = 1800.0  # a build takes about a minute; a holder this slow is hung: use the torch twin instead
_POLL_S = 0.2
_reasons: dict[str, str] = {}  # kernel family -> why load_native returned None


def cache_dir() -> Path:
    """Where compiled kernels live: one folder per kernel family and build key."""
    root = os.environ.get("OMNIFIELD_CACHE") or os.path.join(Path.home(), ".cache", "omnifield")
    return Path(root) / "native"


@lru_cache(maxsize=None)
def _compiler() -> tuple[str, str] | None:
    """``(path, first line of --version)`` of the C++ compiler torch would use (``$CXX`` or ``c++``), or ``None``."""
    path = shutil.which(os.environ.get("CXX") or "c++")
    if path is None:
        return None
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return str(Path(path).resolve()), (version.strip().splitlines() or [""])[0]


@lru_cache(maxsize=None)
def _cpu_identity() -> str:
    """The CPU model and feature flags (``-march=native`` code runs only on CPUs like this one)."""
    lines = []
    try:
        with open("/proc/cpuinfo") as fh:
            lines = [ln for ln in fh if ln.startswith(("model name", "flags", "Features", "CPU part"))]
    except OSError:
        pass
    return platform.machine() + "".join(sorted(set(lines)))


def build_key(name: str) -> str:
    """Digest of what the compiled kernel ``name`` depends on (never of paths, the ninja version or the checkout)."""
    compiler = _compiler()
    parts = [(_HERE / f"{name}.cpp").read_bytes().decode(), repr(CFLAGS), repr(LDFLAGS), torch.__version__,
             str(torch._C._GLIBCXX_USE_CXX11_ABI), sysconfig.get_config_var("EXT_SUFFIX") or "", repr(compiler),
             _cpu_identity()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _say(message: str) -> None:
    print(f"omnifield: {message}", file=sys.stderr, flush=True)


def _lock_holder(lock: Path) -> str:
    try:
        return lock.read_text().split()[0]
    except (OSError, IndexError):  # not yet written
        return "?"


@contextmanager
def build_lock(folder: Path, name: str) -> Iterator[str | None]:
    """Hold the build lock of ``folder`` (``<folder>.lock``); yields the previous holder (``"pid host"``, or
    ``""``), or ``None`` when the wait timed out.

    The lock is an ``flock``, released by the kernel when its holder exits or is killed, so it is never
    left stale; the file holds the holder's pid and host for the waiting message.
    """
    lock = folder.with_name(folder.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        start, announced = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    _say(f"waiting for another process compiling native kernels {name} (pid {_lock_holder(lock)})")
                    announced = True
                if time.monotonic() - start > WAIT_LIMIT_S:
                    yield None
                    return
                time.sleep(_POLL_S)
        previous = os.pread(fd, 256, 0).decode(errors="replace").strip()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {platform.node()}\n".encode(), 0)
        try:
            yield previous
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _import(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(name: str, folder: Path, previous: str) -> ModuleType:
    """Compile ``<name>.cpp`` in ``folder`` (under its build lock; ``previous`` names the last holder) and import
    it; ``folder/built.json`` marks success."""
    from torch.utils.cpp_extension import load

    from omnifield.io.atomic import write_text_atomic

    if folder.exists():
        leftovers = [p.name for p in folder.iterdir()]
        if leftovers:
            by = f"pid {previous.split()[0]}" if previous else "a process"
            _say(f"native kernels {name}: removing an unfinished build in {folder} (left by {by}, which stopped "
                 "before it finished); rebuilding")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    source = folder / f"{name}.cpp"  # a copy: the build files then name the same path in every checkout
    shutil.copyfile(_HERE / f"{name}.cpp", source)
    with _compiling(name):
        module = load(name=f"omnifield_{name}", sources=[str(source)], extra_cflags=list(CFLAGS),
                      extra_ldflags=list(LDFLAGS), build_directory=str(folder), verbose=False)
    write_text_atomic(folder / "built.json", json.dumps({"library": Path(module.__file__).name, "compiler": _compiler(),
                                                          "torch": torch.__version__}))
    return module


@contextmanager
def _compiling(name: str) -> Iterator[None]:
    """Say that ``name`` compiles; on a terminal a spinner counts the seconds, elsewhere one line at each end."""
    message = f"compiling native kernels {name} (first use, about a minute)"
    start, stop = time.monotonic(), threading.Event()
    live = sys.stderr.isatty()

    def spin() -> None:
        for frame in itertools.cycle("|/-\\"):
            if stop.wait(0.25):
                return
            print(f"\romnifield: {message} {frame} {time.monotonic() - start:.0f} s", end="", file=sys.stderr,
                  flush=True)

    spinner = threading.Thread(target=spin, daemon=True)
    if live:
        spinner.start()
    else:
        _say(message)
    try:
        yield
    finally:
        stop.set()
        if live:
            spinner.join()
            print("\r", end="", file=sys.stderr)
        _say(f"compiled native kernels {name} in {time.monotonic() - start:.0f} s")


def _built(folder: Path) -> Path | None:
    """The finished library in ``folder`` (its ``built.json`` written after a successful build), else ``None``."""
    try:
        library = folder / json.loads((folder / "built.json").read_text())["library"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return library if library.is_file() else None


def _load(name: str) -> ModuleType:
    if _compiler() is None:
        raise RuntimeError(f"no C++ compiler ({os.environ.get('CXX') or 'c++'} not found on PATH)")
    folder = cache_dir() / f"{name}-{build_key(name)}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    library = _built(folder)
    if library is None:
        with build_lock(folder, name) as previous:
            if previous is None:
                raise RuntimeError(f"gave up waiting {WAIT_LIMIT_S:.0f} s for another process compiling it")
            library = _built(folder)  # another process may have built it while we waited
            if library is None:
                return _build(name, folder, previous)
    return _import(library, library.name.split(".")[0])


@lru_cache(maxsize=None)
def load_native(name: str) -> ModuleType | None:
    """Compile (once) and import the kernel family ``name`` (``<name>.cpp``); ``None`` if impossible."""
    if os.environ.get("OMNIFIELD_BACKEND", "").lower() == "torch":
        return None
    if not (_HERE / f"{name}.cpp").exists():
        raise FileNotFoundError(f"no native source {_HERE / f'{name}.cpp'}")
    try:
        return _load(name)
    except Exception as exc:  # noqa: BLE001 - any build failure means "use the torch twin"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _reasons[name] = f"native kernel {name!r} unavailable ({first})"
        warnings.warn(f"omnifield: {_reasons[name]}; using the slower pure-torch version", RuntimeWarning,
                      stacklevel=2)
        return None


def unavailable_reason(name: str) -> str | None:
    """Why :func:`load_native` returns ``None`` for ``name`` (``None`` if it loaded or was never asked)."""
    if os.environ.get("OMNIFIELD_BACKEND", "").lower() == "torch":
        return "OMNIFIELD_BACKEND=torch forces the pure-torch twins"
    return _reasons.get(name)
