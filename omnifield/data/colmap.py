"""Reader for COLMAP sparse models (``cameras``, ``images``, ``points3D``; ``.bin`` or ``.txt``).

COLMAP stores world-to-camera poses (quaternion ``qw qx qy qz`` + translation) in OpenCV axes; they are
turned into OpenGL camera-to-world matrices. The robust bounding box of the 3D points (camera centres
when there are none) is mapped to ``[-1, 1]^3``; the map is kept as the scene's :class:`Normalization`.
Images are read from ``root/images``; frames are sorted by name and every 8th is held out for ``test``.
Per-view ``near_far`` comes from the depths of the points that project into each image.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from omnifield.data.blender import check_camera, downscale_images, inside_scene
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
from omnifield.renderers.cameras import Cameras

# model id -> (name, number of parameters)
CAMERA_MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
                 4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8)}
MODEL_IDS = {name: i for i, (name, _) in CAMERA_MODELS.items()}
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class ColmapCamera:
    """One COLMAP camera: model name, image size and the model's parameter list."""

    model: str
    width: int
    height: int
    params: np.ndarray

    def intrinsics(self) -> tuple[list[float], bool]:
        """``[fx, fy, cx, cy, k1, k2, k3, k4, p1, p2]`` and whether the model is fisheye."""
        p = [float(v) for v in self.params]
        if self.model == "SIMPLE_PINHOLE":
            return [p[0], p[0], p[1], p[2], 0, 0, 0, 0, 0, 0], False
        if self.model == "PINHOLE":
            return [*p[:4], 0, 0, 0, 0, 0, 0], False
        if self.model == "SIMPLE_RADIAL":
            return [p[0], p[0], p[1], p[2], p[3], 0, 0, 0, 0, 0], False
        if self.model == "RADIAL":
            return [p[0], p[0], p[1], p[2], p[3], p[4], 0, 0, 0, 0], False
        if self.model == "OPENCV":
            return [*p[:4], p[4], p[5], 0, 0, p[6], p[7]], False
        return [*p[:4], *p[4:8], 0, 0], True  # OPENCV_FISHEYE


@dataclass
class ColmapModel:
    """A sparse model: cameras by id; per image (name, camera id, world-to-camera ``[4, 4]``); points and
    their tracks as (point row, image name) pairs: ``track_points [M]`` rows of ``xyz``, ``track_images [M]``
    names of images."""

    cameras: dict[int, ColmapCamera]
    images: list[tuple[str, int, np.ndarray]]
    xyz: np.ndarray  # [P, 3]
    rgb: np.ndarray  # [P, 3] uint8
    track_points: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [M]
    track_images: list[str] = field(default_factory=list)  # [M]

    def tracks_in(self, names: list[str]) -> torch.Tensor:
        """(point row, view) pairs ``[M', 2]`` of the tracks' observations in the images ``names`` (a view is
        an index into ``names``); observations in other images are left out."""
        view_of = {name: i for i, name in enumerate(names)}
        views = np.array([view_of.get(name, -1) for name in self.track_images], dtype=np.int64)
        keep = views >= 0
        return torch.from_numpy(np.stack([self.track_points[keep], views[keep]], axis=-1).reshape(-1, 2))


def qvec_to_rotation(q: np.ndarray) -> np.ndarray:
    """Unit quaternions ``[..., 4]`` (w, x, y, z) -> rotation matrices ``[..., 3, 3]``."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def _w2c(qvec, tvec) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = qvec_to_rotation(np.asarray(qvec, dtype=np.float64))
    m[:3, 3] = tvec
    return m


def _camera(model_id: int, width: int, height: int, params, where: str) -> ColmapCamera:
    if model_id not in CAMERA_MODELS:
        raise OmnifieldError(f"{where}: unsupported COLMAP camera model id {model_id} "
                             f"(supported: {', '.join(n for n, _ in CAMERA_MODELS.values())})")
    name, n_params = CAMERA_MODELS[model_id]
    if len(params) != n_params:
        raise OmnifieldError(f"{where}: {name} needs {n_params} parameters, got {len(params)}")
    if not 0 < width < 1 << 20 or not 0 < height < 1 << 20:
        raise OmnifieldError(f"{where}: image size {width}x{height} is not a positive size")
    camera = ColmapCamera(name, int(width), int(height), np.asarray(params, dtype=np.float64))
    check_camera(camera.intrinsics()[0], where)
    return camera


class _Reader:
    """Sequential little-endian reads from a bytes buffer with a clear error on truncation."""

    def __init__(self, path: Path):
        self.path, self.data, self.pos = path, path.read_bytes(), 0

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise OmnifieldError(f"{self.path}: truncated file")
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def skip(self, n_bytes: int) -> None:
        if self.pos + n_bytes > len(self.data):
            raise OmnifieldError(f"{self.path}: truncated file")
        self.pos += n_bytes

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise OmnifieldError(f"{self.path}: truncated file")
        text, self.pos = self.data[self.pos:end].decode(), end + 1
        return text


def _read_binary(folder: Path) -> ColmapModel:
    r = _Reader(folder / "cameras.bin")
    cameras = {}
    for _ in range(r.read("Q")[0]):
        cam_id, model_id, width, height = r.read("iiQQ")
        n_params = CAMERA_MODELS.get(model_id, ("", 0))[1]
        cameras[cam_id] = _camera(model_id, width, height, r.read(f"{n_params}d"), f"{r.path} camera {cam_id}")
    r = _Reader(folder / "images.bin")
    images, names = [], {}
    for _ in range(r.read("Q")[0]):
        values = r.read("i4d3di")
        name = r.string()
        r.skip(r.read("Q")[0] * 24)  # 2D points: x, y (double), point3D id (int64)
        images.append((name, values[8], _w2c(values[1:5], values[5:8])))
        names[values[0]] = name
    xyz, rgb = np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    track_points, track_ids = [], []
    if (folder / "points3D.bin").is_file():
        r = _Reader(folder / "points3D.bin")
        rows = []
        for _ in range(r.read("Q")[0]):
            values = r.read("Q3d3BdQ")
            track = r.read(f"{2 * values[8]}i")  # track: image id, point2D index (int32 each)
            track_ids.extend(track[::2])
            track_points.extend([len(rows)] * values[8])
            rows.append(values[1:7])
        if rows:
            table = np.asarray(rows, dtype=np.float64)
            xyz, rgb = table[:, :3], table[:, 3:6].astype(np.uint8)
    return ColmapModel(cameras, images, xyz, rgb, *_tracks(track_points, track_ids, names))


def _data_lines(path: Path) -> list[list[str]]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise OmnifieldError(f"{path}: cannot read ({exc})") from None
    return [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _read_text(folder: Path) -> ColmapModel:
    cameras = {}
    for row in _data_lines(folder / "cameras.txt"):
        where = f"{folder / 'cameras.txt'} camera {row[0]}"
        if len(row) < 4 or row[1] not in MODEL_IDS:
            raise OmnifieldError(f"{where}: expected 'ID MODEL WIDTH HEIGHT PARAMS...' with a supported model")
        cameras[int(row[0])] = _camera(MODEL_IDS[row[1]], int(row[2]), int(row[3]), [float(v) for v in row[4:]],
                                       where)
    # images.txt alternates a 10-field pose line and a 2D-points line of (x, y, id) triples (maybe empty)
    images, names = [], {}
    for row in _data_lines(folder / "images.txt"):
        if len(row) == 10:
            images.append((row[9], int(row[8]), _w2c([float(v) for v in row[1:5]], [float(v) for v in row[5:8]])))
            names[int(row[0])] = row[9]
    xyz, rgb = np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    track_points, track_ids = [], []
    if (folder / "points3D.txt").is_file():
        rows = _data_lines(folder / "points3D.txt")
        if rows:
            table = np.asarray([row[1:7] for row in rows], dtype=np.float64)
            xyz, rgb = table[:, :3], table[:, 3:6].astype(np.uint8)
        for i, row in enumerate(rows):  # ... ERROR, then (IMAGE_ID, POINT2D_IDX) pairs
            track_ids.extend(int(v) for v in row[8::2])
            track_points.extend([i] * len(row[8::2]))
    return ColmapModel(cameras, images, xyz, rgb, *_tracks(track_points, track_ids, names))


def _tracks(points: list[int], image_ids: list[int], names: dict[int, str]) -> tuple[np.ndarray, list[str]]:
    """Track observations as (point row, image name); those naming an image the model lacks are dropped."""
    kept = [(p, names[i]) for p, i in zip(points, image_ids) if i in names]
    return np.array([p for p, _ in kept], dtype=np.int64), [n for _, n in kept]


def read_colmap_model(folder: str | Path) -> ColmapModel:
    """Read a sparse model folder, binary when ``cameras.bin`` exists, else text."""
    folder = Path(folder)
    binary = (folder / "cameras.bin").is_file()
    try:
        model = _read_binary(folder) if binary else _read_text(folder)
    except FileNotFoundError as exc:
        raise OmnifieldError(f"{folder}: COLMAP model is missing {Path(exc.filename).name}") from None
    except (ValueError, IndexError, OverflowError) as exc:
        raise OmnifieldError(f"{folder}: malformed COLMAP {'binary' if binary else 'text'} model ({exc})") from None
    if not model.images:
        raise OmnifieldError(f"{folder}: COLMAP model has no registered images")
    for name, camera_id, w2c in model.images:
        if camera_id not in model.cameras:
            raise OmnifieldError(f"{folder}: image {name!r} uses camera {camera_id}, which the model does not define")
        if not np.isfinite(w2c).all():
            raise OmnifieldError(f"{folder}: image {name!r} has a non-finite pose")
    return model


def _model(root: Path) -> ColmapModel:
    folder = colmap_model_dir(root)
    if folder is None:
        raise OmnifieldError(f"{root}: no COLMAP model (sparse/0/cameras.bin or .txt)")
    return read_colmap_model(folder)


def _normalization(model: ColmapModel, c2w: np.ndarray) -> Normalization:
    return Normalization.fitting(model.xyz if len(model.xyz) >= 4 else c2w[:, :3, 3])


def colmap_normalization(root: str | Path) -> Normalization:
    """The world-to-box normalisation :func:`load_colmap` applies to the capture in ``root``."""
    model = _model(Path(root))
    c2w = np.stack([np.linalg.inv(w2c) for _, _, w2c in model.images])
    return _normalization(model, c2w)


def load_colmap(root: str | Path, split: str = "train", downscale: int = 1) -> Scene:
    """Load ``split`` of a COLMAP capture (``root/images`` + ``root/sparse/0``) as a normalised :class:`Scene`."""
    root = Path(root)
    model = _model(root)
    frames = sorted(model.images, key=lambda item: item[0])
    c2w_world = np.stack([np.linalg.inv(w2c) @ OPENCV_TO_OPENGL for _, _, w2c in frames])
    normalization = _normalization(model, c2w_world)
    chosen = split_indices(len(frames), split, str(root))
    if len(chosen) == 0:
        raise OmnifieldError(f"{root}: split {split!r} is empty ({len(frames)} registered images)")
    images, intrinsics, names, fisheye = [], [], [], set()
    for i in chosen:
        name, cam_id, _ = frames[i]
        if cam_id not in model.cameras:
            raise OmnifieldError(f"{root}: image {name!r} refers to unknown camera {cam_id}")
        cam = model.cameras[cam_id]
        path = inside_scene(root, str(Path("images") / name), f"{root}: COLMAP image {name!r}")
        img = read_image(path)
        if img.shape[:2] != (cam.height, cam.width):
            raise OmnifieldError(f"{path}: size {img.shape[1]}x{img.shape[0]} differs from "
                                 f"its COLMAP camera's {cam.width}x{cam.height}")
        mismatch = layout_mismatch(path, img.shape, images[0].shape) if images else None
        if mismatch:
            raise OmnifieldError(mismatch)
        k, is_fisheye = cam.intrinsics()
        images.append(img)
        intrinsics.append(k)
        fisheye.add(is_fisheye)
        names.append(Path(name).stem)
    if len(fisheye) > 1:
        raise OmnifieldError(f"{root}: mixing fisheye and perspective cameras is not supported")
    k = torch.tensor(intrinsics, dtype=torch.float32)
    c2w = torch.from_numpy(normalization.apply_to_poses(c2w_world[chosen])).float()
    h, w = images[0].shape[:2]
    cameras = Cameras(c2w, k[:, 0], k[:, 1], k[:, 2], k[:, 3], w, h)
    pixels, cameras = downscale_images(torch.from_numpy(np.stack(images)), cameras, downscale)
    cameras.distortion = k[:, 4:] if bool((k[:, 4:] != 0).any()) else None
    cameras.fisheye = fisheye == {True}
    points = ScenePoints(torch.from_numpy(normalization.to_box(model.xyz)).float(),
                         torch.from_numpy(model.rgb.astype(np.float32) / 255.0),
                         model.tracks_in([frames[i][0] for i in chosen])) if len(model.xyz) else None
    near_far = depth_bounds_from_points(cameras, points.xyz) if points is not None else None
    return Scene(pixels, cameras, names, normalization, points, near_far)
