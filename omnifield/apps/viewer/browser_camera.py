"""Browser camera (viser: OpenCV axes, vertical field of view) -> renderer :class:`Cameras` (OpenGL axes)."""

from __future__ import annotations

import math

import numpy as np
import torch

from omnifield.renderers.cameras import Cameras

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])


def quaternion_matrix(wxyz: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` -> rotation ``[3, 3]``."""
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def browser_camera(wxyz: np.ndarray, position: np.ndarray, fov_y: float, width: int, height: int) -> Cameras:
    """One pinhole camera of ``width x height`` pixels from a browser pose (``R_world_camera`` as ``wxyz``)."""
    c2w = np.eye(4)
    c2w[:3, :3] = quaternion_matrix(wxyz) @ OPENCV_TO_OPENGL
    c2w[:3, 3] = position
    focal = 0.5 * height / math.tan(0.5 * fov_y)
    one = lambda v: torch.tensor([float(v)])  # noqa: E731
    return Cameras(torch.from_numpy(c2w).float()[None], one(focal), one(focal), one(width / 2), one(height / 2),
                   width, height)


def progressive_sizes(aspect: float, max_width: int, levels: int = 4) -> list[tuple[int, int]]:
    """Image sizes ``(width, height)`` from coarse to ``max_width``, each level twice the previous width."""
    widths = [max(8, max_width >> (levels - 1 - i)) for i in range(levels)]
    return [(w, max(1, round(w / aspect))) for w in widths]
