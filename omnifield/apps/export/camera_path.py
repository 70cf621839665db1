"""Camera paths for videos: an orbit around the capture, or a JSON file of poses in world units.

A path file looks like ``transforms.json``: intrinsics (``fl_x``/``camera_angle_x``, ``w``, ``h``, ...) and
``frames`` holding 4x4 OpenGL ``transform_matrix`` poses, in the capture's world units.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from omnifield.data.blender import _matrix
from omnifield.data.scene import Normalization, load_scene
from omnifield.data.transforms import INTRINSIC_KEYS, _intrinsics, read_transforms_json
from omnifield.errors import OmnifieldError
from omnifield.renderers.cameras import Cameras, orbit_cameras


def path_file_cameras(path: str | Path, normalization: Normalization) -> Cameras:
    """Cameras ``[F]`` of a path file, moved into the field's box with ``normalization``."""
    path = Path(path)
    meta = read_transforms_json(path)
    if "w" not in meta or "h" not in meta:
        raise OmnifieldError(f"{path}: a camera path needs the image size 'w' and 'h'")
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
