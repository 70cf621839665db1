"""Shape regulariser of 3D Gaussians: PhysGaussian's penalty on spiky ones (nerfstudio splatfacto's
``use_scale_regularization``)."""

from __future__ import annotations

import torch

SCALE_RATIO_WEIGHT = 0.1  # splatfacto's
SCALE_RATIO_EVERY = 10  # splatfacto adds it every 10 steps


def scale_ratio_loss(log_scales: torch.Tensor, max_ratio: float) -> torch.Tensor:
    """Mean over Gaussians of ``max(ratio, max_ratio) - max_ratio``, ``ratio`` = largest / smallest axis, from
    ``log_scales [N, 3]``: 0 for Gaussians up to ``max_ratio`` times longer than thin, linear beyond."""
    if len(log_scales) == 0:
        return log_scales.sum() * 0.0
    ratio = torch.exp(log_scales.amax(dim=-1) - log_scales.amin(dim=-1))
    return (ratio.clamp_min(max_ratio) - max_ratio).mean()
