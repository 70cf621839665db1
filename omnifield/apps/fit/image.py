"""Fit an :class:`~omnifield.fields.image_field.ImageField` to a picture: random pixel batches, MSE, PSNR.

NeuRBF encodings get their centres by k-means of the pixel grid weighted by the image's gradient
magnitude (Sobel) before training, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.filters import sobel
from skimage.transform import resize

from omnifield.apps.fit.optim import make_optimizer
from omnifield.config import config_to_dict, register_config
from omnifield.data.images import read_image
from omnifield.engine import LoopConfig
from omnifield.engine.regression import FieldFit, run_fit
from omnifield.errors import OmnifieldError
from omnifield.fields.image_field import ImageField, pixel_coordinates
from omnifield.metrics import psnr_from_mse


@register_config("fit_image")
@dataclass
class FitImageConfig:
    """Pixels per batch, learning rates, image size, seed; ``loop``: the budget (steps and/or minutes),
    log and checkpoint intervals of the training engine."""

    backend: str = ""  # the preset the field was sized from (a label for reports)
    batch_pixels: int = 16384
    lr_grid: float = 1e-2
    lr_mlp: float = 1e-3
    size: int = 256
    seed: int = 0
    loop: LoopConfig = dataclass_field(default_factory=lambda: LoopConfig(steps=2000))


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


def fit_image(image: torch.Tensor, field_cfg: Any, cfg: FitImageConfig, checkpoint: Path | None = None,
              resume: tuple[dict, dict] | None = None, log: Path | None = None) -> dict[str, Any]:
    """Train a field on ``image [H, W, 3]`` with random pixel batches and MSE, under ``cfg.loop``.

    ``checkpoint``: where the training state is saved (None: nowhere); ``resume``: ``(tensors, meta)`` of
    such a checkpoint to continue exactly; ``log``: a ``log.jsonl`` path. Returns ``{"field", "psnr",
    "seconds", "steps", "prediction" [H, W, 3]}``; ``seconds`` counts training only (not the NeuRBF
    k-means nor the first step, which compiles kernels)."""
    torch.manual_seed(cfg.seed)
    height, width = image.shape[:2]
    if resume is not None and resume[1].get("image_shape") != [height, width]:
        raise OmnifieldError(f"--resume: the image is {height}x{width} pixels, the fit in {checkpoint} was of "
                             f"another ({resume[1].get('image_shape')}): pass the same image and --size")
    field = field_cfg.build()
    if resume is None:
        init_rbf_centers(field, image)
    uv_all = pixel_coordinates(height, width).reshape(-1, 2)
    rgb_all = image.reshape(-1, 3)
    n_batch = min(cfg.batch_pixels, uv_all.shape[0])

    def batch_loss(generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, uv_all.shape[0], (n_batch,), generator=generator)
        return torch.mean((field(uv_all[idx]) - rgb_all[idx]) ** 2)

    meta = {"config": {"field": config_to_dict(field_cfg), "fit": config_to_dict(cfg)}, "image_shape": [height, width]}
    task = FieldFit(field, make_optimizer(field, cfg.lr_grid, cfg.lr_mlp), batch_loss, cfg.seed,
                    checkpoint=checkpoint, meta=meta)
    engine = run_fit(task, cfg.loop, resume, "fit image", log)
    prediction = render_image(field, height, width)
    return {"field": field, "psnr": psnr(prediction, image), "seconds": engine.elapsed, "steps": engine.step,
            "prediction": prediction}
