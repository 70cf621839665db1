"""Reader for LLFF captures: ``images/`` (optionally ``images_4``, ``images_8``, ...) and ``poses_bounds.npy``.

``poses_bounds.npy`` holds one row of 17 numbers per image, row i for the i-th image in sorted name
order: a 3x5 matrix (camera-to-world 3x4 with columns in LLFF's axis order [down, right, backwards],
then the column [H, W, focal] of the original photos) and the near / far depth bounds of the view.
Poses become OpenGL camera-to-world matrices (x right, y up, looking down -z); the focal length is
scaled by image width / W. The box normalisation fits the camera centres and the points at the near
and far bounds on each optical axis. A COLMAP model beside it (``sparse/0``, same world frame, as LLFF's
``imgs2poses`` writes it) gives the sparse points. Every 8th image is held out for ``test``/``val``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from omnifield.data.blender import downscale_images
from omnifield.data.images import read_image
from omnifield.data.scene import LLFF_POSES, Normalization, Scene, ScenePoints, colmap_model_dir, split_indices
from omnifield.errors import OmnifieldError
from omnifield.renderers.cameras import Cameras

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def llff_to_opengl(poses: np.ndarray) -> np.ndarray:
    """LLFF ``[N, 3, 4]`` camera-to-world (columns down, right, backwards, centre) -> OpenGL ``[N, 4, 4]``."""
    out = np.zeros((len(poses), 4, 4))
    out[:, :3, 0], out[:, :3, 1], out[:, :3, 2] = poses[:, :, 1], -poses[:, :, 0], poses[:, :, 2]
    out[:, :3, 3], out[:, 3, 3] = poses[:, :, 3], 1.0
    return out


def read_poses_bounds(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenGL camera-to-world ``[N, 4, 4]``, original ``[H, W, focal]`` ``[N, 3]`` and bounds ``[N, 2]`` (world)."""
    path = root / LLFF_POSES
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise OmnifieldError(f"{path}: cannot read ({exc})") from None
    if table.ndim != 2 or table.shape[1] != 17 or len(table) == 0:
        raise OmnifieldError(f"{path}: expected N rows of 17 numbers (3x5 pose + near, far), got shape {table.shape}")
    table = table.astype(np.float64)
    if not np.isfinite(table).all():
        raise OmnifieldError(f"{path}: contains NaN or Inf")
    mats = table[:, :15].reshape(-1, 3, 5)
    rot = mats[:, :, :3]
    if not np.allclose(rot.transpose(0, 2, 1) @ rot, np.eye(3), atol=1e-2):
        raise OmnifieldError(f"{path}: the pose rotations are not orthonormal")
    hwf, bounds = mats[:, :, 4], table[:, 15:17]
    if (hwf <= 0).any() or (bounds[:, 0] <= 0).any() or (bounds[:, 1] <= bounds[:, 0]).any():
        raise OmnifieldError(f"{path}: needs positive H, W, focal and 0 < near < far in every row")
    return llff_to_opengl(mats[:, :, :4]), hwf, bounds


def _normalization(c2w: np.ndarray, bounds: np.ndarray) -> Normalization:
    forward = -c2w[:, :3, 2]
    centres = c2w[:, :3, 3]
    ends = [centres + forward * bounds[:, k : k + 1] for k in (0, 1)]
    return Normalization.fitting(np.concatenate([centres, *ends]))


def llff_normalization(root: str | Path) -> Normalization:
    """The world-to-box normalisation :func:`load_llff` applies to the capture in ``root``."""
    c2w, _, bounds = read_poses_bounds(Path(root))
    return _normalization(c2w, bounds)


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name)


def _image_folder(root: Path, downscale: int) -> tuple[list[Path], int]:
    """The image files to read and the factor still to apply: ``images_<downscale>`` when its size matches."""
    full = _image_files(root / "images")
    if not full:
        raise OmnifieldError(f"{root / 'images'}: no .png or .jpg images found")
    if downscale > 1:
        small = _image_files(root / f"images_{downscale}")
        if len(small) == len(full):
            h, w = read_image(full[0]).shape[:2]
            hs, ws = read_image(small[0]).shape[:2]
            if abs(hs - h / downscale) <= 1 and abs(ws - w / downscale) <= 1:
                return small, 1
    return full, downscale


def load_llff(root: str | Path, split: str = "train", downscale: int = 1) -> Scene:
    """Load ``split`` of an LLFF capture in ``root`` as a normalised :class:`Scene` with ``near_far``."""
    root = Path(root)
    c2w_world, hwf, bounds = read_poses_bounds(root)
    files, factor = _image_folder(root, downscale)
    if len(files) != len(c2w_world):
        raise OmnifieldError(f"{root / LLFF_POSES}: {len(c2w_world)} poses for {len(files)} images in "
                             f"{files[0].parent}; row i must belong to the i-th image in sorted order")
    chosen = split_indices(len(files), split, str(root))
    if len(chosen) == 0:
        raise OmnifieldError(f"{root}: split {split!r} is empty ({len(files)} images)")
    images = []
    for i in chosen:
        img = read_image(files[i])
        if images and img.shape != images[0].shape:
            raise OmnifieldError(f"{files[i]}: all images must share one size and channel count")
        images.append(img)
    h, w = images[0].shape[:2]
    normalization = _normalization(c2w_world, bounds)
    focal = torch.from_numpy(hwf[chosen, 2] * w / hwf[chosen, 1]).float()
    c2w = torch.from_numpy(normalization.apply_to_poses(c2w_world[chosen])).float()
    cameras = Cameras(c2w, focal, focal.clone(), torch.full_like(focal, w / 2), torch.full_like(focal, h / 2), w, h)
    pixels, cameras = downscale_images(torch.from_numpy(np.stack(images)), cameras, factor)
    near_far = torch.from_numpy(bounds[chosen] * normalization.scale).float()
    return Scene(pixels, cameras, [files[i].stem for i in chosen], normalization, _sparse_points(root, normalization),
                 near_far)


def _sparse_points(root: Path, normalization: Normalization) -> ScenePoints | None:
    """The COLMAP model's points beside the LLFF poses (same world frame), in box units, or None."""
    folder = colmap_model_dir(root)
    if folder is None or not any((folder / f"points3D{ext}").is_file() for ext in (".bin", ".txt")):
        return None
    from omnifield.data.colmap import read_colmap_model

    model = read_colmap_model(folder)
    if not len(model.xyz):
        return None
    return ScenePoints(torch.from_numpy(normalization.to_box(model.xyz)).float(),
                       torch.from_numpy(model.rgb.astype(np.float32) / 255.0))
