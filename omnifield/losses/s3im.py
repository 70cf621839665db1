"""S3IM: stochastic structural similarity over a batch of random rays (Xie et al., ICCV 2023).

The batch of ``R`` rays is repeated ``repeats`` times (identity order first, then random
permutations), the ``R * repeats`` colours are laid out as a "virtual image"
``[1, 3, patch_height, R * repeats / patch_height]`` exactly as the paper's code does
(``vec.permute(1, 0).reshape(1, 3, H, W * repeats)``), and the loss is ``1 - SSIM`` with the
paper's SSIM: a Gaussian window of ``kernel_size`` (sigma 1.5) centred on tap ``kernel_size // 2``
(so an even kernel, such as the default 4, is off-centre by half a tap), ``stride``, and zero
padding ``(kernel_size - 1) // 2``. :func:`omnifield.metrics.ssim` centres its window and pads
nothing, which differs for even kernels; hence the paper's form is written out here.
With the paper's 4096 rays and ``patch_height`` 64 the virtual image is ``64 x (64 * repeats)``;
other batch sizes use ``floor(R * repeats / patch_height)`` columns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnifield.errors import OmnifieldError

SSIM_SIGMA = 1.5
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2


def paper_window(kernel_size: int, channels: int, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """S3IM's separable Gaussian window ``[channels, 1, k, k]``, centred on tap ``k // 2``."""
    x = torch.arange(kernel_size, dtype=torch.float32) - kernel_size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, kernel_size, kernel_size).contiguous()


def strided_ssim(img1: torch.Tensor, img2: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """Mean SSIM of ``[B, C, H, W]`` images as in S3IM: :func:`paper_window`, zero padding, ``stride``."""
    c = img1.shape[1]
    window = paper_window(kernel_size, c).to(img1)
    conv = lambda t: F.conv2d(t, window, padding=(kernel_size - 1) // 2, groups=c, stride=stride)  # noqa: E731
    mu1, mu2 = conv(img1), conv(img2)
    s11 = conv(img1 * img1) - mu1**2
    s22 = conv(img2 * img2) - mu2**2
    s12 = conv(img1 * img2) - mu1 * mu2
    num = (2 * mu1 * mu2 + SSIM_C1) * (2 * s12 + SSIM_C2)
    return (num / ((mu1**2 + mu2**2 + SSIM_C1) * (s11 + s22 + SSIM_C2))).mean()


def virtual_image_indices(n_rays: int, repeats: int, generator: torch.Generator | None = None,
                          device: torch.device | str = "cpu") -> torch.Tensor:
    """Ray indices ``[n_rays * repeats]``: ``arange(n_rays)`` then ``repeats - 1`` random permutations."""
    perms = [torch.arange(n_rays)] + [torch.randperm(n_rays, generator=generator) for _ in range(repeats - 1)]
    return torch.cat(perms).to(device)


def virtual_image(values: torch.Tensor, indices: torch.Tensor, patch_height: int) -> torch.Tensor:
    """Arrange ``values[indices]`` (``[M, C]``) as the image ``[1, C, patch_height, M // patch_height]``.

    Trailing entries that do not fill a whole column are dropped.
    """
    picked = values[indices]
    width = picked.shape[0] // patch_height
    return picked[: patch_height * width].permute(1, 0).reshape(1, values.shape[1], patch_height, width)


def s3im_loss(
    pred_rgb: torch.Tensor,  # [R, 3]
    target_rgb: torch.Tensor,  # [R, 3]
    repeats: int = 10,
    kernel_size: int = 4,
    stride: int = 4,
    patch_height: int = 64,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``1 - SSIM`` of the virtual images of ``pred_rgb`` and ``target_rgb`` (a scalar tensor, differentiable)."""
    if pred_rgb.shape != target_rgb.shape or pred_rgb.dim() != 2:
        raise OmnifieldError(f"s3im: prediction {tuple(pred_rgb.shape)} and target {tuple(target_rgb.shape)} "
                             "must both be [rays, channels]")
    if repeats < 1 or kernel_size < 1 or stride < 1 or patch_height < 1:
        raise OmnifieldError("s3im: repeats, kernel size, stride and patch height must all be >= 1")
    n_rays = pred_rgb.shape[0]
    if n_rays * repeats < patch_height * kernel_size:
        raise OmnifieldError(f"s3im: {n_rays} rays x {repeats} repeats cannot fill a {patch_height}-pixel-high "
                             f"virtual image at least {kernel_size} columns wide; use more rays or a smaller "
                             "patch height")
    indices = virtual_image_indices(n_rays, repeats, generator, pred_rgb.device)
    src = virtual_image(pred_rgb, indices, patch_height)
    tar = virtual_image(target_rgb, indices, patch_height).to(src.dtype)
    return 1.0 - strided_ssim(src, tar, kernel_size, stride)
