"""Image reading with clear errors, and alpha compositing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from omnifield.errors import OmnifieldError


def read_image(path: Path) -> np.ndarray:
    """Read an 8- or 16-bit PNG/JPEG as float32 ``[H, W, C]`` in [0, 1] (C = 3 or 4)."""
    import imageio.v3 as iio

    if not path.is_file():
        raise OmnifieldError(f"{path}: image file not found")
    if path.stat().st_size == 0:
        raise OmnifieldError(f"{path}: cannot read image: empty or unreadable image (the file has 0 bytes)")
    try:
        img = iio.imread(path)
    except Exception as exc:  # noqa: BLE001 - imageio raises many types for corrupt files
        reason = " ".join(str(exc).split())  # imageio's messages span several lines
        if "pip install" in reason:  # no plugin recognised the bytes; its advice to install one misleads
            reason = "not an image format imageio recognises"
        raise OmnifieldError(f"{path}: cannot read image: empty or unreadable image ({reason})") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (1, 3, 4):
        raise OmnifieldError(f"{path}: expected an RGB or RGBA image, got array of shape {img.shape}")
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0 if img.dtype == np.uint8 else 1.0
    return img.astype(np.float32) / scale


CHANNEL_NAMES = {3: "RGB", 4: "RGBA"}


def layout_mismatch(path: Path, shape: tuple, first: tuple, compare_channels: bool = True) -> str | None:
    """Why an image of ``shape [H, W, C]`` cannot join frames shaped ``first``: what differs, or None."""
    if tuple(shape[:2]) != tuple(first[:2]):
        return f"{path}: image size {shape[1]}x{shape[0]} differs from the first frame's {first[1]}x{first[0]}"
    if compare_channels and shape[2] != first[2]:
        return (f"{path}: has {shape[2]} channels ({CHANNEL_NAMES.get(shape[2], '?')}), the first frame has "
                f"{first[2]} ({CHANNEL_NAMES.get(first[2], '?')}); convert all frames to one layout")
    return None


def composite_on(rgba: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` RGBA (or ``[..., 3]`` RGB, returned as is) over ``background [..., 3]`` -> ``[..., 3]``."""
    if rgba.shape[-1] == 3:
        return rgba
    alpha = rgba[..., 3:4]
    return rgba[..., :3] * alpha + background * (1.0 - alpha)


def to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 array."""
    arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
