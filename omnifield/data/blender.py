"""Reader for Blender / NeRF-synthetic scenes (``transforms_{train,val,test}.json`` + PNG frames).

Each ``transforms_<split>.json`` holds ``camera_angle_x`` (or ``fl_x``/``fl_y``/``cx``/``cy``) and
``frames`` with ``file_path`` (relative, extension optional) and a 4×4 camera-to-world
``transform_matrix`` in OpenGL axes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from omnifield.data.images import layout_mismatch, read_image
from omnifield.errors import OmnifieldError
from omnifield.renderers.cameras import Cameras


@dataclass
class PosedImages:
    """Images with their cameras: ``images [N, H, W, C]`` float in [0, 1] (C = 4 when RGBA)."""

    images: torch.Tensor
    cameras: Cameras
    names: list[str]


ALLOW_OUTSIDE_ENV = "OMNIFIELD_ALLOW_OUTSIDE_PATHS"
MAX_DISTORTION = 50.0  # |k|, |p| of real lenses stay within a few units (strong fisheyes: k ~ 1)


def inside_scene(root: Path, name: str, where: str) -> Path:
    """``root / name``, refused when ``name`` (absolute, or climbing with ``..``) leaves the scene folder
    ``root``, unless the environment sets ``OMNIFIELD_ALLOW_OUTSIDE_PATHS=1``. Symbolic links inside the
    folder are followed as usual: the test is on the path as written."""
    path = Path(os.path.abspath(root / name))
    if os.environ.get(ALLOW_OUTSIDE_ENV) != "1" and not path.is_relative_to(os.path.abspath(root)):
        raise OmnifieldError(f"{where}: image path {name!r} points outside the scene folder {root} "
                             f"(set {ALLOW_OUTSIDE_ENV}=1 to allow it)")
    return path


def check_camera(values: list[float], where: str) -> list[float]:
    """``[fx, fy, cx, cy, k1, k2, k3, k4, p1, p2]`` checked: finite, positive focal lengths, plausible distortion."""
    if not all(math.isfinite(v) for v in values):
        raise OmnifieldError(f"{where}: camera intrinsics contain NaN or Inf")
    if values[0] <= 0 or values[1] <= 0:
        raise OmnifieldError(f"{where}: focal lengths must be positive, got fx={values[0]}, fy={values[1]}")
    worst = max(abs(v) for v in values[4:]) if len(values) > 4 else 0.0
    if worst > MAX_DISTORTION:
        raise OmnifieldError(f"{where}: implausible lens distortion coefficient {worst:g} (|k|, |p| must be "
                             f"<= {MAX_DISTORTION:g}; real lenses stay within a few units)")
    return values


def _resolve_frame(root: Path, file_path: str, where: str) -> Path:
    base = inside_scene(root, file_path, where).resolve()
    if base.suffix or not base.name:
        candidates = [base]
    else:
        candidates = [base.with_suffix(ext) for ext in (".png", ".jpg", ".jpeg", ".PNG", ".JPG")]
    for candidate in candidates:
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # a name too long or otherwise impossible for the file system
            break
    raise OmnifieldError(f"{where}: image {file_path!r} not found (looked for {candidates[0]})")


def _matrix(value, where: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise OmnifieldError(f"{where}: transform_matrix is not a numeric 4x4 matrix") from None
    if m.shape == (3, 4):
        m = np.concatenate([m, [[0, 0, 0, 1]]], axis=0)
    if m.shape != (4, 4):
        raise OmnifieldError(f"{where}: transform_matrix must be 4x4, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise OmnifieldError(f"{where}: transform_matrix contains NaN or Inf")
    rot = m[:3, :3]
    if abs(abs(np.linalg.det(rot)) - 1.0) > 1e-2 or not np.allclose(rot.T @ rot, np.eye(3), atol=1e-2):
        raise OmnifieldError(f"{where}: transform_matrix rotation is not orthonormal (not a rigid camera pose)")
    return m


def _intrinsic(meta: dict, key: str, default: float | None, where: Path, positive: bool = False) -> float:
    """``meta[key]`` (or ``default``) as a finite float, > 0 when ``positive``."""
    value = meta.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if positive and ok and value <= 0:
        raise OmnifieldError(f"{where}: '{key}' must be a positive number, got {value!r}")
    if not ok:
        raise OmnifieldError(f"{where}: '{key}' must be a {'positive' if positive else 'finite'} number, got {value!r}")
    return float(value)


def downscale_images(images: torch.Tensor, cameras: Cameras, factor: int) -> tuple[torch.Tensor, Cameras]:
    """Area-average ``images [N, H, W, C]`` by an integer ``factor`` and scale the intrinsics to match."""
    if factor == 1:
        return images, cameras
    n, h, w, c = images.shape
    h2, w2 = h // factor, w // factor
    if h2 < 1 or w2 < 1:
        raise OmnifieldError(f"downscale factor {factor} is larger than the image size {w}x{h}")
    small = torch.nn.functional.avg_pool2d(images[:, : h2 * factor, : w2 * factor].permute(0, 3, 1, 2), factor)
    cams = Cameras(cameras.c2w, cameras.fx / factor, cameras.fy / factor, cameras.cx / factor, cameras.cy / factor,
                   w2, h2)
    return small.permute(0, 2, 3, 1).contiguous(), cams


def load_blender(root: str | Path, split: str = "train", downscale: int = 1) -> PosedImages:
    """Load ``root/transforms_<split>.json`` and its frames, optionally downscaled by an integer factor.

    Clear :class:`OmnifieldError` messages for missing or malformed input.
    """
    if not isinstance(downscale, int) or downscale < 1:
        raise OmnifieldError(f"downscale must be a positive integer, got {downscale!r}")
    root = Path(root)
    if not root.is_dir():
        raise OmnifieldError(f"{root}: data folder not found")
    meta_path = root / f"transforms_{split}.json"
    if not meta_path.is_file():  # a single transforms.json holds every split: load_scene takes the held-out views out
        raise OmnifieldError(f"{meta_path}: file not found (load_scene reads transforms.json, LLFF and COLMAP "
                             f"captures)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OmnifieldError(f"{meta_path}: malformed JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise OmnifieldError(f"{meta_path}: missing the 'frames' list")
    if not meta["frames"]:
        raise OmnifieldError(f"{meta_path}: 'frames' is empty, no usable images")
    images, poses, names = [], [], []
    for i, frame in enumerate(meta["frames"]):
        where = f"{meta_path} frames[{i}]"
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise OmnifieldError(f"{where}: needs 'file_path' and 'transform_matrix'")
        path = _resolve_frame(meta_path.parent, str(frame["file_path"]), where)
        img = read_image(path)
        mismatch = layout_mismatch(path, img.shape, images[0].shape) if images else None
        if mismatch:
            raise OmnifieldError(mismatch)
        images.append(img)
        poses.append(_matrix(frame["transform_matrix"], where))
        names.append(path.stem)
    h, w = images[0].shape[:2]
    c2w = torch.from_numpy(np.stack(poses)).float()
    n = len(images)
    if "fl_x" in meta:
        fx = _intrinsic(meta, "fl_x", None, meta_path, positive=True)
        fy = _intrinsic(meta, "fl_y", fx, meta_path, positive=True)
        cx, cy = _intrinsic(meta, "cx", w / 2, meta_path), _intrinsic(meta, "cy", h / 2, meta_path)
        full = lambda v: torch.full((n,), v)  # noqa: E731
        cameras = Cameras(c2w, full(fx), full(fy), full(cx), full(cy), w, h)
    else:
        angle = meta.get("camera_angle_x")
        if not isinstance(angle, (int, float)) or not 0 < angle < math.pi:
            raise OmnifieldError(f"{meta_path}: 'camera_angle_x' must be a number in (0, pi), got {angle!r}")
        cameras = Cameras.from_fov(c2w, float(angle), w, h)
    pixels, cameras = downscale_images(torch.from_numpy(np.stack(images)), cameras, downscale)
    return PosedImages(pixels, cameras, names)
