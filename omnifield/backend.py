"""The one place that decides which implementation runs: CUDA, native CPU kernel, or pure torch.

Public ops call :func:`native_kernels` / :func:`use_cuda_library` instead of
scattering ``if cuda:`` checks, and configs with an ``implementation`` field (hash grid, MLP)
ask :func:`resolve_implementation` whether tiny-cuda-nn takes over. The environment variable
``OMNIFIELD_BACKEND=torch`` forces the pure-torch twins everywhere (useful for
debugging and for tests that compare the two).
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from functools import lru_cache

import torch


def forced_torch() -> bool:
    """True when ``OMNIFIELD_BACKEND=torch`` asks for the pure-torch twins."""
    return os.environ.get("OMNIFIELD_BACKEND", "").lower() == "torch"


def native_kernels(tensor: torch.Tensor, family: str):
    """The compiled native module ``family`` if it should handle ``tensor``, else ``None``.

    Native kernels take CPU float32 tensors; anything else (CUDA, float64 for
    gradcheck, ``OMNIFIELD_BACKEND=torch``) goes to the pure-torch twin.
    """
    if forced_torch() or tensor.device.type != "cpu" or tensor.dtype != torch.float32:
        return None
    from omnifield.native import load_native

    return load_native(family)


@lru_cache(maxsize=None)
def wide_vector_registers() -> bool:
    """Whether the CPU runs torch's kernels with AVX-512 (32 registers of 16 floats).

    The fused native MLP keeps 4 rows x up to 128 columns of accumulators in registers: with AVX-512 it is
    faster than torch's layers, with AVX2's 16 registers of 8 floats they spill and it ran ~8x slower than
    torch's BLAS layers (65k rows, 31 -> 64 -> 64 -> 3, one thread, AMD EPYC: 730 vs 100 ms forward +
    backward), so there the MLP uses its torch twin.
    """
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


@lru_cache(maxsize=None)
def has_module(name: str) -> bool:
    """Whether an optional package (``nerfacc``, ``gsplat``, ``tinycudann``) imports."""
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


def use_cuda_library(tensor: torch.Tensor, name: str) -> bool:
    """Whether ``tensor`` lives on CUDA and the optional library ``name`` is importable."""
    return tensor.is_cuda and not forced_torch() and has_module(name)


def missing_cuda_library_note(device: torch.device, name: str, what: str) -> str | None:
    """A one-line note when ``device`` is CUDA but the library ``name`` that would accelerate ``what``
    does not import (the torch path then runs on the GPU, slower); ``None`` otherwise."""
    if device.type != "cuda" or forced_torch() or has_module(name):
        return None
    return f"note: {name} is not installed, so {what} uses omnifield's torch path on the GPU (pip install {name})"


def resolve_device(requested: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; a missing GPU is a clear error.

    Under torchrun a bare ``cuda``/``auto`` on a GPU machine means this process' ``LOCAL_RANK`` GPU.
    """
    from omnifield.errors import OmnifieldError

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise OmnifieldError(f"--device {requested!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise OmnifieldError(f"--device {requested!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OmnifieldError(f"--device {requested}: no CUDA device is available (use --device cpu)")
        by_rank = device.index is None and "LOCAL_RANK" in os.environ
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if device.index >= torch.cuda.device_count():
            hint = (f" for local rank {device.index}: start at most {torch.cuda.device_count()} process(es) per "
                    "machine, or train on the CPU with --device cpu") if by_rank else ""
            raise OmnifieldError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s){hint}")
    return device


IMPLEMENTATIONS = ("auto", "omnifield", "tcnn")
_build_device: list[torch.device] = []  # innermost build_on() device, if any


@contextlib.contextmanager
def build_on(device: torch.device) -> Iterator[None]:
    """Modules built inside are meant for ``device``: on a CPU, ``auto`` never picks tiny-cuda-nn.

    Example: ``with build_on(torch.device("cpu")): run = Run.open(path)`` on a machine with CUDA.
    """
    _build_device.append(torch.device(device))
    try:
        yield
    finally:
        _build_device.pop()


def resolve_implementation(requested: str, what: str) -> str:
    """The implementation a hash grid or MLP config asks for: ``omnifield`` or ``tcnn``.

    ``auto`` means tiny-cuda-nn when it imports and CUDA is present (and ``OMNIFIELD_BACKEND`` does
    not force the torch twins, and no enclosing :func:`build_on` names a CPU), else our own.
    An explicit ``tcnn`` without them is a clear error.
    """
    if requested not in IMPLEMENTATIONS:
        raise ValueError(f"{what}: implementation must be one of {', '.join(IMPLEMENTATIONS)}, got {requested!r}")
    usable = torch.cuda.is_available() and not forced_torch() and has_module("tinycudann")
    if requested == "auto":
        on_cpu = bool(_build_device) and _build_device[-1].type == "cpu"
        return "tcnn" if usable and not on_cpu else "omnifield"
    if requested == "tcnn" and not usable:
        from omnifield.errors import OmnifieldError

        raise OmnifieldError(f"{what}: implementation 'tcnn' needs a CUDA device and the tinycudann package "
                             "(pip install omnifield[cuda], then tiny-cuda-nn's torch bindings)")
    return requested
