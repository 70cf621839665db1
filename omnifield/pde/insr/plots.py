"""Pictures of an INSR run: an animation of the solution next to its references, and errors over time.

Both write to a temporary file and rename it into place.
"""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v2 as imageio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _figure_rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def _frame(points: np.ndarray, frames: dict[str, np.ndarray], step: int, t: float) -> np.ndarray:
    """One picture of step ``step``: 1-D curves, 2-D speed images, or deformed points."""
    names = list(frames)
    if points.shape[1] == 1:
        fig, ax = plt.subplots(figsize=(6, 3.2), dpi=80)
        order = np.argsort(points[:, 0])
        for name in names:
            ax.plot(points[order, 0], frames[name][step][order, 0], label=name)
        ax.set_ylim(-0.2, 1.2)
        ax.legend(loc="upper right")
    elif "fem" in names:
        fig, ax = plt.subplots(figsize=(6, 3.2), dpi=80)
        for name, marker in zip(names, ("o", "x", "+")):
            deformed = points + frames[name][step]
            ax.scatter(deformed[:, 0], deformed[:, 1], s=6, marker=marker, label=name)
        ax.set_aspect("equal")
        ax.legend(loc="lower left")
    else:
        n = int(round(np.sqrt(points.shape[0])))
        fig, axes = plt.subplots(1, len(names), figsize=(3 * len(names), 3.2), dpi=80)
        for ax, name in zip(np.atleast_1d(axes), names):
            speed = np.linalg.norm(frames[name][step], axis=-1).reshape(n, n).T
            ax.imshow(speed, origin="lower", vmin=0.0, vmax=1.0, cmap="viridis")
            ax.set_title(name)
            ax.axis("off")
    fig.suptitle(f"t = {t:.3f}")
    return _figure_rgb(fig)


def write_animation(
    path: Path,
    points: np.ndarray,  # [M, D]
    frames: dict[str, np.ndarray],  # name -> [n_frames, M, C]
    times: np.ndarray,  # [n_frames]
    fps: int = 8,
) -> None:
    """GIF (or MP4 by suffix) of every frame."""
    images = [_frame(points, frames, i, float(t)) for i, t in enumerate(times)]
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    if path.suffix == ".gif":
        imageio.mimsave(tmp, images, duration=1.0 / fps, loop=0)
    else:
        imageio.mimsave(tmp, images, fps=fps)
    os.replace(tmp, path)


def write_error_plot(path: Path, times: np.ndarray, errors: dict[str, np.ndarray], ylabel: str) -> None:
    """Error of each solver over time, log scale."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for name, err in errors.items():
        ax.semilogy(times, np.maximum(err, 1e-12), marker=".", label=name)
    ax.set_xlabel("t")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, format=path.suffix.lstrip("."))
    plt.close(fig)
    os.replace(tmp, path)
