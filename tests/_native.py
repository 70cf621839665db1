"""Native-vs-twin parity tests run only where the native kernels build; elsewhere they skip, saying why."""

from __future__ import annotations

import pytest
import torch


def native_or_skip(family: str):
    """The compiled kernel family ``family``, or skip the calling test with the reason it is unavailable."""
    from omnifield.backend import native_kernels
    from omnifield.native import unavailable_reason

    module = native_kernels(torch.zeros(1), family)
    if module is None:
        pytest.skip(unavailable_reason(family) or f"native kernels {family!r} not loaded")
    return module
