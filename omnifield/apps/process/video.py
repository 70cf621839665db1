"""Frames from a video: ``num_frames`` picks spread evenly, each the sharpest frame of its window.

Sharpness is the variance of the Laplacian of the grey image (blurred frames have weak second derivatives).
The video is decoded twice (scores, then the picked frames), so memory holds one frame at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from omnifield.errors import OmnifieldError


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of ``image [H, W, C]`` or ``[H, W]`` (mean over channels)."""
    grey = np.asarray(image, dtype=np.float32)
    if grey.ndim == 3:
        grey = grey[..., :3].mean(axis=-1)
    lap = (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]) - 4.0 * grey[1:-1, 1:-1]
    return float(lap.var())


def pick_sharpest(scores: np.ndarray, num_frames: int) -> np.ndarray:
    """Indices (sorted) of the best score in each of ``num_frames`` equal consecutive windows of ``scores [F]``."""
    windows = np.array_split(np.arange(len(scores)), min(num_frames, len(scores)))
    return np.array([w[np.argmax(scores[w])] for w in windows], dtype=np.int64)


def _frames(video: Path) -> Iterator[np.ndarray]:
    import imageio.v2 as iio2

    try:
        reader = iio2.get_reader(video, format="FFMPEG")
    except Exception as exc:  # noqa: BLE001 - imageio/ffmpeg raise many types
        raise OmnifieldError(f"{video}: cannot read video ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    try:
        for frame in reader:
            yield frame
    except Exception as exc:  # noqa: BLE001
        raise OmnifieldError(f"{video}: cannot decode video ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    finally:
        reader.close()


def extract_frames(video: Path, out_dir: Path, num_frames: int, progress=None) -> list[str]:
    """Write the picked frames of ``video`` as ``frame_00000.jpg``... into ``out_dir``; returns their names.

    ``progress`` (a tqdm-like object or None) is advanced once per frame of the scoring pass.
    """
    from PIL import Image

    scores = []
    for frame in _frames(video):
        scores.append(laplacian_variance(frame))
        if progress is not None:
            progress.update(1)
    if not scores:
        raise OmnifieldError(f"{video}: the video has no frames")
    chosen = pick_sharpest(np.asarray(scores), num_frames)
    wanted, names = set(chosen.tolist()), []
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(_frames(video)):
        if i in wanted:
            names.append(f"frame_{i:05d}.jpg")
            Image.fromarray(np.asarray(frame)[..., :3]).save(out_dir / names[-1], quality=95)
        if i >= chosen[-1]:
            break
    return names
