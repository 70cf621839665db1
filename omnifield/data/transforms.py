"""Reader for Instant-NGP / nerfstudio captures: one ``transforms.json`` for all frames.

Intrinsics (``fl_x, fl_y, cx, cy, w, h``, or ``camera_angle_x``/``camera_angle_y``), distortion
(``k1..k4, p1, p2``; ``camera_model: OPENCV_FISHEYE`` for fisheye) may be global or per frame. Per-frame
``mask_path`` images become the alpha channel (0 = ignore). ``scale``/``offset`` (Instant-NGP's map into
its unit cube; defaults 0.33 and 0.5 as there) define the normalisation into the field box ``[-1, 1]^3``.
``ply_file_path`` (nerfstudio, ``omnifield process``: a point cloud relative to the json, in the frames'
world) gives the sparse points, from their depths the per-view ``near_far``, and, without ``scale`` and
``offset``, the normalisation (their robust bounding box mapped onto ``[-1, 1]^3``, as the COLMAP reader
does); with neither, world = box. Where a COLMAP model lies beside the json (where :func:`colmap_model_dir`
finds one, in the json's folder or under ``colmap/``: the layouts of ``omnifield process`` and
``ns-process-data``) and its points are the ply's, row for row, the points get its tracks. ``aabb_scale`` is kept on the scene. Frames are sorted by file name and
every 8th one is held out for ``test``/``val``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from omnifield.data.blender import _matrix, _resolve_frame, check_camera, downscale_images
from omnifield.data.images import layout_mismatch, read_image
from omnifield.data.scene import (
    Normalization,
    Scene,
    ScenePoints,
    colmap_model_dir,
    depth_bounds_from_points,
    split_indices,
)
from omnifield.errors import OmnifieldError
from omnifield.io.points import read_point_cloud
from omnifield.renderers.cameras import Cameras

DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
NGP_DEFAULT_SCALE = 0.33  # Instant-NGP's scale when only 'offset' is given
INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y", "camera_model",
                  *DISTORTION_KEYS)


def read_transforms_json(path: Path) -> dict:
    """The parsed ``transforms.json`` with a non-empty ``frames`` list, or a clear :class:`OmnifieldError`."""
    try:
        meta = json.loads(Path(path).read_text())
    except OSError as exc:
        raise OmnifieldError(f"{path}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OmnifieldError(f"{path}: malformed JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise OmnifieldError(f"{path}: needs a non-empty 'frames' list")
    return meta


def transforms_normalization(meta: dict, points: np.ndarray | None = None) -> Normalization:
    """World-to-box map: Instant-NGP's ``x * scale + offset`` into [0, 1]^3, re-centred onto [-1, 1]^3;
    without them, the fit of the sparse world ``points [P, 3]`` to [-1, 1]^3; else the identity."""
    if "scale" not in meta and "offset" not in meta:
        return Normalization.fitting(points) if points is not None and len(points) >= 4 else Normalization()
    try:
        scale = float(meta.get("scale", NGP_DEFAULT_SCALE))
        offset = np.asarray(meta.get("offset", [0.5, 0.5, 0.5]), dtype=np.float64)
    except (TypeError, ValueError):
        scale, offset = 0.0, np.zeros(0)
    if not scale > 0 or offset.shape != (3,) or not np.isfinite(offset).all():
        raise OmnifieldError("transforms.json: 'scale' must be > 0 and 'offset' a list of 3 numbers")
    return Normalization(2.0 * scale, tuple(float(v) for v in 2.0 * offset - 1.0))


def _intrinsics(params: dict, image_hw: tuple[int, int], where: str) -> list[float]:
    """``[fx, fy, cx, cy, k1, k2, k3, k4, p1, p2]`` of one frame from its merged parameters."""
    try:
        values = _intrinsics_unchecked(params, image_hw, where)
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise OmnifieldError(f"{where}: camera intrinsics must be numbers ({exc})") from None
    return check_camera(values, where)


def _intrinsics_unchecked(params: dict, image_hw: tuple[int, int], where: str) -> list[float]:
    h, w = image_hw
    if "fl_x" in params:
        fx = float(params["fl_x"])
        fy = float(params.get("fl_y", fx))
    elif "camera_angle_x" in params:
        fx = 0.5 * w / math.tan(0.5 * float(params["camera_angle_x"]))
        fy = 0.5 * h / math.tan(0.5 * float(params["camera_angle_y"])) if "camera_angle_y" in params else fx
    else:
        raise OmnifieldError(f"{where}: no focal length (fl_x or camera_angle_x)")
    if fx <= 0 or fy <= 0:
        raise OmnifieldError(f"{where}: focal lengths must be positive, got fl_x={fx}, fl_y={fy}")
    sx, sy = w / float(params.get("w", w)), h / float(params.get("h", h))  # intrinsics given for another size
    cx, cy = float(params.get("cx", params.get("w", w) / 2)), float(params.get("cy", params.get("h", h) / 2))
    return [fx * sx, fy * sy, cx * sx, cy * sy, *(float(params.get(k, 0.0)) for k in DISTORTION_KEYS)]


def _with_mask(img: np.ndarray, mask_path: Path) -> np.ndarray:
    mask = read_image(mask_path)[..., 0]
    if mask.shape != img.shape[:2]:
        raise OmnifieldError(f"{mask_path}: mask size {mask.shape} differs from its image's {img.shape[:2]}")
    alpha = img[..., 3] * mask if img.shape[-1] == 4 else mask
    return np.concatenate([img[..., :3], alpha[..., None]], axis=-1)


def load_transforms(path: str | Path, split: str = "train", downscale: int = 1) -> Scene:
    """Load ``split`` of an Instant-NGP / nerfstudio ``transforms.json`` as a normalised :class:`Scene`."""
    path = Path(path)
    meta = read_transforms_json(path)
    world_points = transforms_points(path, meta)
    normalization = transforms_normalization(meta, None if world_points is None else world_points.xyz.double().numpy())
    top = {k: meta[k] for k in INTRINSIC_KEYS if k in meta}
    frames = sorted(meta["frames"], key=lambda f: str(f.get("file_path", "")) if isinstance(f, dict) else "")
    chosen = split_indices(len(frames), split, str(path))
    if len(chosen) == 0:
        raise OmnifieldError(f"{path}: split {split!r} is empty ({len(frames)} frames)")
    images, poses, intrinsics, names, file_names, models = [], [], [], [], [], set()
    for i in chosen:
        frame, where = frames[i], f"{path} frames[{i}]"
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise OmnifieldError(f"{where}: needs 'file_path' and 'transform_matrix'")
        image_path = _resolve_frame(path.parent, str(frame["file_path"]), where)
        img = read_image(image_path)
        if "mask_path" in frame:
            img = _with_mask(img, _resolve_frame(path.parent, str(frame["mask_path"]), where))
        mismatch = layout_mismatch(image_path, img.shape, images[0].shape, compare_channels=False) if images else None
        if mismatch:  # frames without alpha are made opaque below
            raise OmnifieldError(mismatch)
        params = {**top, **{k: frame[k] for k in INTRINSIC_KEYS if k in frame}}
        images.append(img)
        poses.append(_matrix(frame["transform_matrix"], where))
        intrinsics.append(_intrinsics(params, img.shape[:2], where))
        models.add(str(params.get("camera_model", "OPENCV")).upper())
        names.append(image_path.stem)
        file_names.append(image_path.name)
    if len(models) > 1:
        raise OmnifieldError(f"{path}: frames mix camera models {sorted(models)}")
    if any(img.shape[-1] == 4 for img in images):  # frames without a mask or alpha are fully opaque
        images = [img if img.shape[-1] == 4 else np.concatenate([img, np.ones_like(img[..., :1])], -1) for img in images]
    k = torch.tensor(intrinsics, dtype=torch.float32)
    c2w = torch.from_numpy(normalization.apply_to_poses(np.stack(poses))).float()
    h, w = images[0].shape[:2]
    distortion = k[:, 4:] if bool((k[:, 4:] != 0).any()) else None
    cameras = Cameras(c2w, k[:, 0], k[:, 1], k[:, 2], k[:, 3], w, h)
    pixels, cameras = downscale_images(torch.from_numpy(np.stack(images)), cameras, downscale)
    cameras.distortion, cameras.fisheye = distortion, models == {"OPENCV_FISHEYE"}
    points = None if world_points is None else ScenePoints(
        torch.from_numpy(normalization.to_box(world_points.xyz.double().numpy())).float(), world_points.rgb,
        _tracks_beside(path.parent, world_points.xyz.double().numpy(), file_names))
    near_far = depth_bounds_from_points(cameras, points.xyz) if points is not None else None
    return Scene(pixels, cameras, names, normalization, points, near_far, _aabb_scale(meta, path))


def transforms_points(path: Path, meta: dict) -> ScenePoints | None:
    """The point cloud of ``ply_file_path`` (relative to the json at ``path``) in world units, grey where
    uncoloured; None without one."""
    if "ply_file_path" not in meta:
        return None
    xyz, rgb = read_point_cloud(_resolve_frame(path.parent, str(meta["ply_file_path"]), f"{path} ply_file_path"))
    return ScenePoints(xyz, rgb if rgb is not None else torch.full_like(xyz, 0.5))


def _tracks_beside(root: Path, xyz: np.ndarray, names: list[str]) -> torch.Tensor | None:
    """(point, view) pairs ``[M, 2]`` for the points ``xyz [P, 3]`` (world units) in the frames ``names``, from a
    COLMAP model beside the json whose points are these, row for row (same number; same shape up to a
    similarity, checked by the distances from the centroid); None when there is none or it does not fit."""
    from omnifield.data.colmap import read_colmap_model

    folder = colmap_model_dir(root) or colmap_model_dir(root / "colmap")
    if folder is None:
        return None
    try:
        model = read_colmap_model(folder)
    except OmnifieldError:
        return None
    if len(model.xyz) != len(xyz) or len(xyz) < 4:
        return None
    ours, theirs = (np.linalg.norm(q - q.mean(0), axis=-1) for q in (xyz, model.xyz))
    scale = ours.sum() / max(theirs.sum(), 1e-12)
    if not np.allclose(ours, scale * theirs, rtol=1e-3, atol=1e-4 * ours.max()):
        return None
    return model.tracks_in(names)


def _aabb_scale(meta: dict, path: Path) -> float | None:
    if "aabb_scale" not in meta:
        return None
    value = meta["aabb_scale"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise OmnifieldError(f"{path}: 'aabb_scale' must be a positive number, got {value!r}")
    return float(value)
