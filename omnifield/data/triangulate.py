"""Sparse 3D points of a capture whose poses are known but which came without points (an LLFF folder, a
``transforms.json`` without ``ply_file_path``): SIFT features, exhaustive matching and triangulation with
the given cameras held fixed, all by pycolmap (COLMAP's ``point_triangulator``).

3D Gaussian splatting starts much better from such points than from points along rays. The photos are
written as PNG into a temporary folder (any format and downscale), lens distortion is left to COLMAP's
robust estimators (the cameras are given to it as pinholes), and the points come back in the capture's
box coordinates, since the cameras given are.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from omnifield.data.images import to_uint8
from omnifield.data.pycolmap_settings import sift_first_octave, silence_colmap_logging
from omnifield.data.scene import ScenePoints
from omnifield.errors import OmnifieldError
from omnifield.renderers.cameras import Cameras

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
MAX_IMAGES = 200  # exhaustive matching grows with the square of the number of photos


def _pinhole(cameras: Cameras, i: int):
    """View ``i`` of ``cameras`` as a COLMAP PINHOLE camera."""
    import pycolmap

    params = [float(cameras.fx[i]), float(cameras.fy[i]), float(cameras.cx[i]), float(cameras.cy[i])]
    return pycolmap.Camera(model="PINHOLE", width=cameras.width, height=cameras.height, params=params)


def _posed_model(database: Path, names: list[str], cameras: Cameras):
    """Give the images of ``database`` their known PINHOLE intrinsics, and return a pycolmap model holding them
    with their fixed poses (the database's camera and image ids, so the triangulator can match them up)."""
    import pycolmap

    model = pycolmap.Reconstruction()
    c2w = cameras.c2w.double().cpu().numpy() @ OPENGL_TO_OPENCV
    db = pycolmap.Database.open(database)
    try:
        for image in db.read_all_images():
            i = names.index(image.name)
            camera = _pinhole(cameras, i)
            camera.camera_id = image.camera_id
            db.update_camera(camera)
            model.add_camera_with_trivial_rig(camera)
            w2c = np.linalg.inv(c2w[i])
            model.add_image_with_trivial_frame(
                pycolmap.Image(image_id=image.image_id, name=image.name, camera_id=image.camera_id),
                pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3]))
    finally:
        db.close()
    return model


def triangulate_views(images: torch.Tensor, cameras: Cameras, min_track: int = 3) -> ScenePoints:
    """Points seen by the posed ``images [V, H, W, C]`` (values in [0, 1]) through ``cameras``.

    Returns the points in the cameras' coordinates with their colours in [0, 1] and their ``tracks`` (which
    view sees which point); only points seen in at least ``min_track`` images are kept. Raises
    :class:`OmnifieldError` when too few points are found.
    """
    import pycolmap

    if not 2 <= len(images) <= MAX_IMAGES:
        raise OmnifieldError(f"triangulating points needs 2 to {MAX_IMAGES} posed photos, got {len(images)}")
    silence_colmap_logging()
    names = [f"{i:05d}.png" for i in range(len(images))]
    with tempfile.TemporaryDirectory(prefix="omnifield-triangulate-") as tmp:
        folder, database = Path(tmp) / "images", Path(tmp) / "database.db"
        folder.mkdir()
        import imageio.v3 as iio

        for name, image in zip(names, images):
            iio.imwrite(folder / name, to_uint8(image[..., :3]))
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.sift.first_octave = sift_first_octave(min(max(cameras.width, cameras.height),
                                                             extraction.max_image_size))
        pycolmap.extract_features(database, folder, image_names=names, camera_mode=pycolmap.CameraMode.PER_IMAGE,
                                  extraction_options=extraction, device=pycolmap.Device.cpu)
        model = _posed_model(database, names, cameras)
        pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu)
        (Path(tmp) / "model").mkdir()
        model = pycolmap.triangulate_points(model, database, folder, Path(tmp) / "model")
    points = [p for p in model.points3D.values() if p.track.length() >= min_track]
    if len(points) < 100:
        raise OmnifieldError(f"only {len(points)} points could be triangulated from the {len(images)} posed photos "
                             "(too little texture or overlap, or poses that do not fit the photos)")
    xyz = torch.tensor(np.stack([p.xyz for p in points]), dtype=torch.float32)
    rgb = torch.tensor(np.stack([p.color for p in points]), dtype=torch.float32) / 255.0
    tracks = sorted({(i, int(e.image_id)) for i, p in enumerate(points) for e in p.track.elements})
    view_of_image = {image.image_id: names.index(image.name) for image in model.images.values()}
    pairs = torch.tensor([(i, view_of_image[image_id]) for i, image_id in tracks], dtype=torch.long)
    return ScenePoints(xyz, rgb, pairs)
