"""Writing images and videos (PNG via imageio, mp4 via imageio-ffmpeg with a GIF fallback)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from omnifield.io.atomic import atomic_path


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Atomically write a uint8 ``[H, W, 3|4]`` or ``[H, W]`` image as PNG."""
    import imageio.v3 as iio

    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image, extension=".png")


def write_video(path: str | Path, frames: list[np.ndarray], fps: int = 24) -> Path:
    """Write uint8 frames ``[H, W, 3]`` as mp4 (H.264 through imageio-ffmpeg); GIF if that fails.

    Returns the path actually written (``.gif`` suffix on fallback).
    """
    import imageio.v2 as iio2

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            writer = iio2.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=8, macro_block_size=1)
            for frame in frames:
                writer.append_data(frame)
            writer.close()
        return path
    except Exception:  # noqa: BLE001 - no ffmpeg binary: fall back to GIF
        gif = path.with_suffix(".gif")
        with atomic_path(gif) as tmp:
            iio2.mimsave(tmp, frames, format="GIF", duration=1.0 / fps, loop=0)
        return gif


def colorize_depth(depth: np.ndarray, opacity: np.ndarray | None = None) -> np.ndarray:
    """Depth ``[H, W]`` -> uint8 turbo colour image ``[H, W, 3]`` (near = warm); transparent pixels white."""
    import matplotlib

    valid = np.isfinite(depth) & ((opacity > 0.5) if opacity is not None else (depth > 0))
    lo, hi = (np.percentile(depth[valid], [1, 99]) if valid.any() else (0.0, 1.0))
    norm = np.clip((depth - lo) / max(hi - lo, 1e-8), 0.0, 1.0)
    rgb = matplotlib.colormaps["turbo"](1.0 - norm)[..., :3]
    rgb[~valid] = 1.0
    return (rgb * 255 + 0.5).astype(np.uint8)
