"""Fit an :class:`~omnifield.fields.image_field.ImageField` to a picture: random pixel batches, MSE, PSNR.

NeuRBF encodings get their centres by k-means of the pixel grid weighted by the image's gradient
magnitude (Sobel) before training, as in the paper.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.filters import sobel
from skimage.transform import resize

from omnifield.apps.fit.optim import make_optimizer
from omnifield.config import register_config
from omnifield.data.images import read_image
from omnifield.fields.image_field import ImageField, pixel_coordinates
from omnifield.metrics import psnr_from_mse


@register_config("fit_image")
@dataclass
class FitImageConfig:
    """Steps (and optional wall-clock cap in seconds), pixels per batch, learning rates, image size."""

    steps: int = 2000
    seconds: float = 0.0
    batch_pixels: int = 16384
    lr_grid: float = 1e-2
    lr_mlp: float = 1e-3
    size: int = 256
    seed: int = 0


def load_image(path: str | Path, size: int = 0) -> torch.Tensor:
    """An RGB image as ``[H, W, 3]`` float32 in [0, 1], resized (anti-aliased) so its longer side is ``size``."""
    img = read_image(Path(path))[..., :3]
    if size > 0 and max(img.shape[:2]) != size:
        scale = size / max(img.shape[:2])
        shape = (max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale)), 3)
        img = resize(img, shape, anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(img))


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of images in [0, 1]."""
    mse = torch.mean((pred.clamp(0, 1) - target) ** 2).item()
    return psnr_from_mse(mse)


@torch.no_grad()
def render_image(field: ImageField, height: int, width: int, chunk: int = 65536) -> torch.Tensor:
    """The field on the pixel grid: ``[H, W, 3]``."""
    uv = pixel_coordinates(height, width).reshape(-1, 2)
    return torch.cat([field(c) for c in uv.split(chunk)]).reshape(height, width, 3)


def init_rbf_centers(field: ImageField, image: torch.Tensor) -> None:
    """Place NeuRBF centres by k-means of pixel positions weighted by the image's gradient magnitude."""
    if not hasattr(field.encoding, "init_centers"):
        return
    grad = sum(sobel(image[..., c].numpy()) for c in range(image.shape[-1]))
    uv = pixel_coordinates(*image.shape[:2]).reshape(-1, 2)
    field.encoding.init_centers(uv, torch.from_numpy(grad.reshape(-1)).float() + 1e-3)


def fit_image(image: torch.Tensor, field_cfg: Any, cfg: FitImageConfig) -> dict[str, Any]:
    """Train a field on ``image [H, W, 3]``. Returns ``{"field", "psnr", "seconds", "steps", "prediction"}``;
    ``seconds`` counts training only (not the NeuRBF k-means)."""
    torch.manual_seed(cfg.seed)
    height, width = image.shape[:2]
    field = field_cfg.build()
    init_rbf_centers(field, image)
    optimizer = make_optimizer(field, cfg.lr_grid, cfg.lr_mlp)
    uv_all = pixel_coordinates(height, width).reshape(-1, 2)
    rgb_all = image.reshape(-1, 3)
    generator = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    step = 0
    while step < cfg.steps and not (cfg.seconds > 0 and time.perf_counter() - start > cfg.seconds):
        idx = torch.randint(0, uv_all.shape[0], (min(cfg.batch_pixels, uv_all.shape[0]),), generator=generator)
        loss = torch.mean((field(uv_all[idx]) - rgb_all[idx]) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
    seconds = time.perf_counter() - start
    prediction = render_image(field, height, width)
    return {"field": field, "psnr": psnr(prediction, image), "seconds": seconds, "steps": step, "prediction": prediction}
