"""The scene folder ``omnifield train`` reads: ``images/`` (undistorted), ``images_2/4/8``, ``sparse/0``,
``transforms.json`` (nerfstudio / Instant-NGP convention) and ``sparse_pc.ply``.

COLMAP's world frame is kept. Its world-to-camera poses (OpenCV axes: x right, y down, z forward) become
camera-to-world matrices in OpenGL axes (x right, y up, z backward): ``c2w = inv(w2c) @ diag(1, -1, -1, 1)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from omnifield.data.colmap import OPENCV_TO_OPENGL, ColmapModel, read_colmap_model
from omnifield.errors import OmnifieldError
from omnifield.io.atomic import write_text_atomic
from omnifield.io.points import save_points_ply

DOWNSCALES = (2, 4, 8)
PLY_NAME = "sparse_pc.ply"


def opengl_c2w(w2c: np.ndarray) -> np.ndarray:
    """COLMAP world-to-camera ``[N, 4, 4]`` (OpenCV axes) -> camera-to-world ``[N, 4, 4]`` (OpenGL axes)."""
    return np.linalg.inv(np.asarray(w2c, dtype=np.float64)) @ OPENCV_TO_OPENGL


def transforms_dict(model: ColmapModel, image_folder: str = "images") -> dict:
    """``transforms.json`` content for an undistorted single-camera model, frames sorted by name."""
    if len(model.cameras) != 1:
        raise OmnifieldError(f"expected one shared camera, the model has {len(model.cameras)}")
    camera = next(iter(model.cameras.values()))
    if camera.model != "PINHOLE":
        raise OmnifieldError(f"expected an undistorted PINHOLE camera, got {camera.model}")
    fx, fy, cx, cy = (float(v) for v in camera.params)
    frames = sorted(model.images, key=lambda item: item[0])
    c2w = opengl_c2w(np.stack([w2c for _, _, w2c in frames]))
    return {
        "camera_model": "OPENCV",
        "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": camera.width, "h": camera.height,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "frames": [{"file_path": f"{image_folder}/{name}", "transform_matrix": m.tolist()}
                   for (name, _, _), m in zip(frames, c2w)],
        "ply_file_path": PLY_NAME,
    }


def write_downscaled(scene: Path, names: list[str], factors=DOWNSCALES, progress=None) -> None:
    """``images_<f>/<name>``: the images of ``scene/images`` box-filtered to ``floor(size / f)``."""
    from PIL import Image

    for factor in factors:
        (scene / f"images_{factor}").mkdir()
    for name in names:
        with Image.open(scene / "images" / name) as img:
            img.load()
            for factor in factors:
                small = img.resize((max(1, img.width // factor), max(1, img.height // factor)), Image.Resampling.BOX)
                small.save(scene / f"images_{factor}" / name, quality=95)
        if progress is not None:
            progress.update(1)


def write_scene_files(scene: Path) -> ColmapModel:
    """``transforms.json`` and ``sparse_pc.ply`` from the model in ``scene/sparse/0``; returns that model."""
    model = read_colmap_model(scene / "sparse" / "0")
    write_text_atomic(scene / "transforms.json", json.dumps(transforms_dict(model), indent=2))
    save_points_ply(scene / PLY_NAME, model.xyz, model.rgb.astype(np.float32) / 255.0)
    return model
