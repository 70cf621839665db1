"""PNG figures: masked input / reconstruction / target, and predicted vs true voxel labels.

Grids are shown as top-down views: voxels are alpha-composited from the top of
the box down (``C = sum_i T_i alpha_i c_i`` over white), so the picture reads
like an orthographic render of the room; and as horizontal slices. Labels show the class of the first
voxel (from the top) whose alpha exceeds 0.5.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from omnifield.apps.mae.scene import CLASS_NAMES  # noqa: E402
from omnifield.io.atomic import atomic_path  # noqa: E402

_CLASS_COLORS = np.array(
    [[1, 1, 1], [0.6, 0.6, 0.6], [0.55, 0.35, 0.2], [0.2, 0.4, 0.9], [0.9, 0.3, 0.3], [0.95, 0.8, 0.1], [0.3, 0.8, 0.3]]
)


def top_down_view(rgba: torch.Tensor) -> np.ndarray:
    """``[4, X, Y, Z] -> [Y, X, 3]`` image: composite along -z over white (rows = y, columns = x)."""
    rgb, alpha = rgba[:3].flip(-1), rgba[3].flip(-1).clamp(0, 1)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha[..., :-1]], -1), -1)
    weights = trans * alpha
    image = (weights[None] * rgb).sum(-1) + (1 - weights.sum(-1))[None]
    return image.permute(2, 1, 0).clamp(0, 1).numpy()[::-1]


def horizontal_slice(rgba: torch.Tensor, fraction: float = 0.23) -> np.ndarray:
    """``[4, X, Y, Z] -> [Y, X, 3]``: the z-layer at ``fraction`` of the height, RGB over white by alpha
    (0.23 of the procedural rooms' box is just above the floor, through every object)."""
    z = min(rgba.shape[-1] - 1, int(fraction * rgba.shape[-1]))
    rgb, alpha = rgba[:3, :, :, z], rgba[3, :, :, z].clamp(0, 1)
    image = rgb * alpha + (1 - alpha)
    return image.permute(2, 1, 0).clamp(0, 1).numpy()[::-1]


def top_down_labels(labels: torch.Tensor, alpha: torch.Tensor) -> np.ndarray:
    """``labels, alpha [X, Y, Z] -> [Y, X, 3]`` colours of the first solid voxel's class from the top."""
    solid = (alpha > 0.5).flip(-1)
    first = solid.float().argmax(-1)
    cls = torch.gather(labels.flip(-1), -1, first[..., None])[..., 0]
    cls = torch.where(solid.any(-1), cls, torch.zeros_like(cls))
    return _CLASS_COLORS[cls.T.numpy()][::-1]


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def reconstruction_figure(masked: torch.Tensor, recon: torch.Tensor, target: torch.Tensor, path) -> Path:
    """For grids ``[B, 4, X, Y, Z]``: rows of (masked input, reconstruction, target), each as a top-down
    view and as a horizontal slice; writes a PNG."""
    rows = masked.shape[0]
    fig, axes = plt.subplots(rows, 6, figsize=(13, 2.4 * rows), squeeze=False)
    grids = (("masked input", masked), ("reconstruction", recon), ("target", target))
    for r in range(rows):
        for c, (title, grid) in enumerate(grids):
            for k, (kind, image) in enumerate((("top", top_down_view(grid[r])), ("slice", horizontal_slice(grid[r])))):
                ax = axes[r, c + 3 * k]
                ax.imshow(image, interpolation="nearest")
                ax.set_axis_off()
                if r == 0:
                    ax.set_title(f"{title}\n({kind})", fontsize=9)
    return _save(fig, path)


def labels_figure(rgba: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, path) -> Path:
    """Rows of (grid, predicted labels, true labels) for ``rgba [B, 4, X, Y, Z]``, labels ``[B, X, Y, Z]``."""
    rows = rgba.shape[0]
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows + 0.6), squeeze=False)
    for r in range(rows):
        panels = (
            ("grid", top_down_view(rgba[r])),
            ("predicted", top_down_labels(pred[r], rgba[r, 3])),
            ("true", top_down_labels(target[r], rgba[r, 3])),
        )
        for c, (title, image) in enumerate(panels):
            axes[r, c].imshow(image, interpolation="nearest")
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=col) for col in _CLASS_COLORS[1:]]
    fig.legend(handles, CLASS_NAMES[1:], loc="lower center", ncol=len(handles), fontsize=8)
    return _save(fig, path)


def loss_figure(histories: dict[str, list[dict]], path, key: str = "loss") -> Path:
    """Training curves (one line per named history of ``{"step", key}`` records); writes a PNG."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, history in histories.items():
        ax.plot([h["step"] for h in history], [h[key] for h in history], label=name, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_yscale("log")
    ax.legend()
    return _save(fig, path)
