"""Up-front size checks: refuse a job whose arrays cannot fit in memory before any work starts.

:func:`available_memory` is what the machine can still give (psutil when installed, else the free
pages from ``os.sysconf``); :func:`require_memory` turns an estimate that exceeds it into an
:class:`OmnifieldError` quoting the estimate, so a typo such as ``--voxel 1e-5`` fails in
milliseconds instead of after an allocation of petabytes.
"""

from __future__ import annotations

import os

from omnifield.errors import OmnifieldError


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation, or None when the platform does not say."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:  # Linux: MemAvailable counts reclaimable caches, as psutil does
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``3.2e10`` -> ``'29.8 GiB'`` (binary units up to EiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


def require_memory(n_bytes: float, what: str, available: int | None = None) -> None:
    """Raise :class:`OmnifieldError` when ``what`` (an estimate of ``n_bytes``) exceeds the available memory."""
    available = available_memory() if available is None else available
    if available is not None and n_bytes > available:
        raise OmnifieldError(f"{what} needs about {format_bytes(n_bytes)}, more than the {format_bytes(available)} "
                             "of memory available")
