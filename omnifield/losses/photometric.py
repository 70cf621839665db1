"""Losses on rendered views: the 3DGS photometric loss and S3IM over random pixels of a view."""

from __future__ import annotations

import torch

from omnifield.losses.s3im import s3im_loss
from omnifield.metrics import ssim

S3IM_RAYS = 4096  # the paper's batch of random rays


def photometric_loss(pred: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.2) -> torch.Tensor:
    """``(1 - ssim_weight) L1 + ssim_weight (1 - SSIM)``; ``pred``, ``target``: ``[H, W, 3]`` in [0, 1] -> scalar."""
    l1 = (pred - target).abs().mean()
    return (1.0 - ssim_weight) * l1 + ssim_weight * (1.0 - ssim(pred, target))


def s3im_on_pixels(pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator,
                   n_rays: int = S3IM_RAYS) -> torch.Tensor:
    """S3IM (paper settings) on ``n_rays`` random pixels of ``pred``/``target`` ``[H, W, 3]`` -> scalar.

    A rendered view plays the part of the NeRF trainer's ray batch: its random pixels are the rays.
    """
    flat_pred, flat_target = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
    pick = torch.randperm(flat_pred.shape[0], generator=generator)[:n_rays].to(pred.device)
    return s3im_loss(flat_pred[pick], flat_target[pick], generator=generator)
