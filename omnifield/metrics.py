"""Image quality metrics: PSNR and SSIM (differentiable, Gaussian window 11, sigma 1.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (any equal shapes)."""
    mse = torch.mean((pred.float() - target.float()) ** 2).clamp_min(1e-12)
    return float(-10.0 * torch.log10(mse))


def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


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
    if window == "gaussian":
        w = _gaussian_window(window_size, sigma, c, pred.device, pred.dtype)
    elif window == "uniform":
        w = torch.full((c, 1, window_size, window_size), 1.0 / window_size**2, device=pred.device, dtype=pred.dtype)
    else:
        raise ValueError(f"window must be 'gaussian' or 'uniform', got {window!r}")
    conv = lambda t: F.conv2d(t, w, stride=stride, groups=c)  # noqa: E731
    mu_x, mu_y = conv(pred), conv(target)
    sxx = conv(pred * pred) - mu_x**2
    syy = conv(target * target) - mu_y**2
    sxy = conv(pred * target) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean()
