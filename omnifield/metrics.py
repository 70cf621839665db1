"""Image quality metrics: PSNR and SSIM (differentiable, Gaussian window 11, sigma 1.5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MIN_MSE = 1e-12  # a perfect match scores 120 dB rather than infinity (JSON has no infinity)


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of values in [0, 1] from their mean squared error: ``-10 log10(max(mse, 1e-12))``."""
    return -10.0 * math.log10(max(float(mse), MIN_MSE))


def psnr_from_mse_tensor(mse: torch.Tensor) -> torch.Tensor:
    """Elementwise :func:`psnr_from_mse` of an MSE tensor (any shape, same shape out)."""
    return -10.0 * torch.log10(mse.clamp_min(MIN_MSE))


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (any equal shapes)."""
    return psnr_from_mse(torch.mean((pred.float() - target.float()) ** 2))


def _window_1d(size: int, sigma: float, kind: str, device, dtype) -> torch.Tensor:
    """The 1-D factor ``[size]`` of the separable SSIM window (``gaussian`` or ``uniform``), summing to 1."""
    if kind == "gaussian":
        x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
        g = torch.exp(-(x**2) / (2 * sigma**2))
        return g / g.sum()
    if kind == "uniform":
        return torch.full((size,), 1.0 / size, device=device, dtype=dtype)
    raise ValueError(f"window must be 'gaussian' or 'uniform', got {kind!r}")


def ssim(
    pred: torch.Tensor,  # [B, C, H, W] or [H, W, C]
    target: torch.Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    stride: int = 1,
    window: str = "gaussian",
) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) with ``C1 = 0.01^2``, ``C2 = 0.03^2`` and a valid-only window.

    ``window="gaussian"`` (default, as in the standard metric) or ``"uniform"``; ``stride`` > 1
    evaluates the window on a strided lattice (as S3IM). ``[H, W, C]`` inputs are treated as one image.
    """
    if pred.dim() == 3:
        pred, target = pred.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None]
    c = pred.shape[1]
    window_size = min(window_size, pred.shape[-2], pred.shape[-1])  # images smaller than the window
    g = _window_1d(window_size, sigma, window, pred.device, pred.dtype)
    # the five local means in one grouped conv, the 2-D window applied as a row pass then a column pass
    stack = torch.cat([pred, target, pred * pred, target * target, pred * target], dim=1)
    k = stack.shape[1]
    rows = F.conv2d(stack, g.view(1, 1, 1, -1).expand(k, 1, 1, window_size), stride=(1, stride), groups=k)
    means = F.conv2d(rows, g.view(1, 1, -1, 1).expand(k, 1, window_size, 1), stride=(stride, 1), groups=k)
    mu_x, mu_y, exx, eyy, exy = means.split(c, dim=1)
    sxx, syy, sxy = exx - mu_x**2, eyy - mu_y**2, exy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean()
