"""The 3DGS photometric loss: ``(1 - lambda) L1 + lambda (1 - SSIM)`` with ``lambda = 0.2``."""

from __future__ import annotations

import torch

from omnifield.metrics import ssim


def photometric_loss(pred: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.2) -> torch.Tensor:
    """``pred``, ``target``: ``[H, W, 3]`` in [0, 1] -> scalar loss."""
    l1 = (pred - target).abs().mean()
    return (1.0 - ssim_weight) * l1 + ssim_weight * (1.0 - ssim(pred, target))
