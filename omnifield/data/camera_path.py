"""Camera paths for videos: an orbit around the capture, or a JSON file of poses in the capture's world units.

Two file layouts are read:

- nerfstudio's ``camera_path.json`` (what its viewer writes): ``render_width``, ``render_height``, ``fps`` and a
  ``camera_path`` list of ``{"camera_to_world": 16 floats (4x4 row-major, OpenGL axes), "fov": vertical field
  of view in degrees}``; ``render_width`` may be left out when each camera gives its ``aspect`` (width / height).
- ``transforms.json``'s: intrinsics (``fl_x``/``camera_angle_x``, ``w``, ``h``, ...) and ``frames`` holding 4x4
  OpenGL ``transform_matrix`` poses.

Poses are in the world coordinates of the data; the run's normalisation moves them into the field's box.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from omnifield.data.blender import _matrix
from omnifield.data.scene import Normalization, load_scene
from omnifield.data.transforms import INTRINSIC_KEYS, _intrinsics, read_transforms_json
from omnifield.errors import OmnifieldError
from omnifield.renderers.cameras import Cameras, orbit_cameras


@dataclass
class CameraPath:
    """Cameras ``[F]`` in the field's box and the frame rate the file asks for (None: not given)."""

    cameras: Cameras
    fps: int | None = None


def read_camera_path(path: str | Path, normalization: Normalization) -> CameraPath:
    """The cameras of a path file (nerfstudio ``camera_path.json`` or transforms layout), moved into the field's
    box with ``normalization``."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except OSError as exc:
        raise OmnifieldError(f"{path}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OmnifieldError(f"{path}: malformed JSON ({exc})") from None
    if isinstance(meta, dict) and "camera_path" in meta:
        return _nerfstudio_path(path, meta, normalization)
    return CameraPath(_transforms_path(path, normalization))


def _positive_number(meta: dict, key: str, where: str, kind=float):
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise OmnifieldError(f"{where}: '{key}' must be a positive number, got {value!r}")
    return kind(value)


def _nerfstudio_path(path: Path, meta: dict, normalization: Normalization) -> CameraPath:
    frames = meta["camera_path"]
    if meta.get("camera_type", "perspective") != "perspective":
        raise OmnifieldError(f"{path}: camera_type {meta['camera_type']!r} is not supported (perspective only)")
    if not isinstance(frames, list) or not frames or not all(isinstance(f, dict) for f in frames):
        raise OmnifieldError(f"{path}: 'camera_path' must be a non-empty list of cameras")
    height = _positive_number(meta, "render_height", str(path), int)
    if "render_width" in meta:
        width = _positive_number(meta, "render_width", str(path), int)
    else:
        width = round(height * _positive_number(frames[0], "aspect", f"{path} camera_path[0]"))
    poses, focal = [], []
    for i, f in enumerate(frames):
        where = f"{path} camera_path[{i}]"
        c2w = f.get("camera_to_world")
        if isinstance(c2w, list) and len(c2w) == 16:  # nerfstudio writes the 4x4 matrix flat, row-major
            c2w = [c2w[r:r + 4] for r in range(0, 16, 4)]
        poses.append(_matrix(c2w, where))
        fov = _positive_number(f, "fov", where)
        if fov >= 180:
            raise OmnifieldError(f"{where}: 'fov' is the vertical field of view in degrees, below 180; got {fov}")
        focal.append(0.5 * height / math.tan(math.radians(fov) / 2))
    fps = _positive_number(meta, "fps", str(path), float) if "fps" in meta else None
    c2w = torch.from_numpy(normalization.apply_to_poses(np.stack(poses))).float()
    f = torch.tensor(focal, dtype=torch.float32)
    n = len(frames)
    cameras = Cameras(c2w, f, f.clone(), torch.full((n,), width / 2), torch.full((n,), height / 2), width, height)
    return CameraPath(cameras, None if fps is None else max(1, round(fps)))


def _transforms_path(path: Path, normalization: Normalization) -> Cameras:
    meta = read_transforms_json(path)
    if "w" not in meta or "h" not in meta:
        raise OmnifieldError(f"{path}: a camera path needs the image size 'w' and 'h' (transforms layout) or "
                             "nerfstudio's 'camera_path' list")
    hw = (int(meta["h"]), int(meta["w"]))
    top = {k: meta[k] for k in INTRINSIC_KEYS if k in meta}
    poses = np.stack([_matrix(f.get("transform_matrix") if isinstance(f, dict) else None, f"{path} frames[{i}]")
                      for i, f in enumerate(meta["frames"])])
    k = torch.tensor([_intrinsics({**top, **f}, hw, f"{path} frames[{i}]") for i, f in enumerate(meta["frames"])],
                     dtype=torch.float32)
    c2w = torch.from_numpy(normalization.apply_to_poses(poses)).float()
    return Cameras(c2w, k[:, 0], k[:, 1], k[:, 2], k[:, 3], hw[1], hw[0])


def orbit_path(data_dir: str | Path, downscale: int, n_frames: int) -> Cameras:
    """``n_frames`` cameras orbiting at the mean radius and height of the capture's test views."""
    if not Path(data_dir).is_dir():
        raise OmnifieldError(f"{data_dir}: the run's data folder is gone; pass --path FILE.json instead of orbit")
    reference = load_scene(data_dir, "test", downscale).cameras
    return orbit_cameras(reference, n_frames)
