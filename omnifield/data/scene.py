"""One entry point for every capture format: :func:`load_scene` detects the format of a folder.

Formats: Blender / NeRF-synthetic (``transforms_<split>.json``, the split files decide), and the
single-file formats where every 8th frame by sorted name is held out for ``test``/``val`` (LLFF's rule):
Instant-NGP / nerfstudio (one ``transforms.json``), LLFF (``poses_bounds.npy`` + ``images/``), COLMAP
(``sparse/0`` or ``sparse``). Each loader maps the scene into the field's box with a recorded
:class:`Normalization` (``x_box = scale * x_world + offset``) so exports can come back in world units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from omnifield.data.blender import PosedImages
from omnifield.errors import OmnifieldError
from omnifield.renderers.cameras import Cameras

HOLDOUT_EVERY = 8
NORMALIZATION_FILE = "normalization.json"
LLFF_POSES = "poses_bounds.npy"


@dataclass
class Normalization:
    """Similarity from world to box coordinates: ``x_box = scale * x_world + offset``."""

    scale: float = 1.0
    offset: tuple = (0.0, 0.0, 0.0)

    def to_world(self, x_box: np.ndarray) -> np.ndarray:
        """Box points ``[N, 3]`` -> world points ``[N, 3]``."""
        return (np.asarray(x_box, dtype=np.float64) - np.asarray(self.offset)) / self.scale

    def to_box(self, x_world: np.ndarray) -> np.ndarray:
        """World points ``[N, 3]`` -> box points ``[N, 3]``."""
        return np.asarray(x_world, dtype=np.float64) * self.scale + np.asarray(self.offset)

    def apply_to_poses(self, c2w: np.ndarray) -> np.ndarray:
        """Camera-to-world ``[N, 4, 4]`` in world units -> the same cameras in box coordinates."""
        out = np.array(c2w, dtype=np.float64, copy=True)
        out[:, :3, 3] = self.to_box(out[:, :3, 3])
        return out

    @classmethod
    def fitting(cls, points: np.ndarray, half_extent: float = 1.0) -> "Normalization":
        """The similarity mapping the robust (2-98 %) bounding box of ``points [N, 3]`` to ``[-h, h]^3``."""
        lo, hi = np.percentile(points, [2, 98], axis=0) if len(points) > 10 else (points.min(0), points.max(0))
        extent = float((hi - lo).max())
        scale = 2.0 * half_extent / extent if extent > 1e-9 else 1.0
        return cls(scale, tuple(float(v) for v in -scale * (lo + hi) / 2))


@dataclass
class ScenePoints:
    """Sparse 3D points of a capture in box coordinates: ``xyz [P, 3]``, ``rgb [P, 3]`` in [0, 1], and, where
    known, their ``tracks [M, 2]``: (point, view) pairs saying which of the images they were found in sees
    which point."""

    xyz: torch.Tensor
    rgb: torch.Tensor
    tracks: torch.Tensor | None = None


@dataclass
class Scene(PosedImages):
    """:class:`PosedImages` plus what real captures add, all in box units (``x_box = scale * x_world + offset``).

    - ``normalization``: the world-to-box similarity.
    - ``points``: sparse 3D points (COLMAP ``points3D``, a transforms.json's ``ply_file_path``, an LLFF
      folder's ``sparse/0``), or None.
    - ``near_far [N, 2]``: per-image depth bounds along the camera's optical axis (z-depth, not ray
      length), or None: LLFF's bounds as published, else the 1st / 99th percentile of the depths of the
      sparse points that project into the image (no margin added).
    - ``aabb_scale``: Instant-NGP's ``aabb_scale``: the content extends to ``[-aabb_scale, aabb_scale]^3``.
    """

    normalization: Normalization = field(default_factory=Normalization)
    points: ScenePoints | None = None
    near_far: torch.Tensor | None = None
    aabb_scale: float | None = None


def project_into_views(cameras: Cameras, view: torch.Tensor,
                       xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pinhole projection (distortion ignored, float64) of points ``xyz [..., 3]`` into the views ``view [...]``
    (indices into ``cameras``; the two broadcast): pixel ``u``, ``v`` (x right, y down), z-depth along the
    optical axis and whether the point lies in front of the camera and inside its image, each ``[...]``."""
    c2w = cameras.c2w.double()[view]  # [..., 4, 4], OpenGL camera axes
    local = ((xyz.double() - c2w[..., :3, 3])[..., None, :] @ c2w[..., :3, :3])[..., 0, :]
    depth = -local[..., 2]
    safe = depth.clamp_min(1e-12)
    u = cameras.cx.double()[view] + cameras.fx.double()[view] * local[..., 0] / safe
    v = cameras.cy.double()[view] - cameras.fy.double()[view] * local[..., 1] / safe
    seen = (depth > 1e-9) & (u >= 0) & (u < cameras.width) & (v >= 0) & (v < cameras.height)
    return u, v, depth, seen


def depth_bounds_from_points(cameras: Cameras, xyz: torch.Tensor, percentiles: tuple[float, float] = (1.0, 99.0),
                             max_points: int = 20000) -> torch.Tensor | None:
    """Per-view ``[near, far]`` ``[N, 2]``: percentiles of the z-depths of the points ``xyz [P, 3]`` that lie in
    front of a camera and project into its image (pinhole, distortion ignored). A view that sees none gets
    the bounds over all views; None when no view sees any point. At most ``max_points`` (evenly strided)."""
    if len(xyz) == 0:
        return None
    pts = xyz[:: max(1, -(-len(xyz) // max_points))]
    _, _, depth, seen = project_into_views(cameras, torch.arange(len(cameras))[:, None], pts[None])  # [N, P]
    if not bool(seen.any()):
        return None
    q = torch.tensor(percentiles, dtype=torch.float64) / 100.0
    masked = torch.where(seen, depth, torch.full_like(depth, float("nan")))
    bounds = torch.nanquantile(masked, q, dim=1).T  # [N, 2]
    overall = torch.quantile(depth[seen], q)
    return torch.where(seen.any(1, keepdim=True), bounds, overall).float()


def split_indices(n: int, split: str, where: str) -> np.ndarray:
    """Indices of ``split`` among ``n`` name-sorted frames: every 8th is ``test``/``val``, the rest ``train``."""
    idx = np.arange(n)
    if split == "train":
        return idx[idx % HOLDOUT_EVERY != 0] if n > 1 else idx
    if split in ("test", "val"):
        return idx[idx % HOLDOUT_EVERY == 0]
    if split == "all":
        return idx
    raise OmnifieldError(f"{where}: unknown split {split!r} (train, val, test or all)")


def detect_format(root: str | Path, split: str = "train") -> str:
    """``"blender"``, ``"transforms"``, ``"llff"`` or ``"colmap"`` for the capture in ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise OmnifieldError(f"{root}: data folder not found")
    if (root / f"transforms_{split}.json").is_file():
        return "blender"
    if (root / "transforms.json").is_file():
        return "transforms"
    if (root / LLFF_POSES).is_file():
        return "llff"
    if colmap_model_dir(root) is not None:
        return "colmap"
    raise OmnifieldError(f"{root}: no transforms_{split}.json, transforms.json or COLMAP sparse/0 model found "
                         f"(nor an LLFF {LLFF_POSES})")


def colmap_model_dir(root: Path) -> Path | None:
    """The COLMAP model folder under ``root`` (``sparse/0``, ``sparse`` or ``root`` itself), or None."""
    for candidate in (root / "sparse" / "0", root / "sparse", root):
        if any((candidate / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
            return candidate
    return None


def load_scene(root: str | Path, split: str = "train", downscale: int = 1) -> Scene:
    """Load ``split`` of the capture in ``root`` in any supported format, downscaled by an integer factor."""
    if not isinstance(downscale, int) or downscale < 1:
        raise OmnifieldError(f"downscale must be a positive integer, got {downscale!r}")
    fmt = detect_format(root, split)
    if fmt == "blender":
        from omnifield.data.blender import load_blender

        data = load_blender(root, split, downscale)
        return Scene(data.images, data.cameras, data.names)
    if fmt == "transforms":
        from omnifield.data.transforms import load_transforms

        return load_transforms(Path(root) / "transforms.json", split, downscale)
    if fmt == "llff":
        from omnifield.data.llff import load_llff

        return load_llff(root, split, downscale)
    from omnifield.data.colmap import load_colmap

    return load_colmap(root, split, downscale)


def scene_normalization(root: str | Path) -> Normalization:
    """The world-to-box normalisation of the capture in ``root`` without reading its images."""
    root = Path(root)
    if (root / "transforms_train.json").is_file():
        return Normalization()
    if (root / "transforms.json").is_file():
        from omnifield.data.transforms import read_transforms_json, transforms_normalization, transforms_points

        meta = read_transforms_json(root / "transforms.json")
        points = transforms_points(root / "transforms.json", meta)
        return transforms_normalization(meta, None if points is None else points.xyz.double().numpy())
    if (root / LLFF_POSES).is_file():
        from omnifield.data.llff import llff_normalization

        return llff_normalization(root)
    if colmap_model_dir(root) is not None:
        from omnifield.data.colmap import colmap_normalization

        return colmap_normalization(root)
    return Normalization()
