"""Capture readers: distorted cameras, Instant-NGP transforms.json, COLMAP text/binary, format dispatch."""

from __future__ import annotations

import json
import struct

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from omnifield.data.colmap import qvec_to_rotation, read_colmap_model
from omnifield.data.scene import depth_bounds_from_points, detect_format, load_scene, scene_normalization
from omnifield.errors import OmnifieldError
from omnifield.renderers.cameras import Cameras
from omnifield.renderers.distortion import distort, undistort

W, H = 16, 12


def _project_opencv(points_cam, fx, fy, cx, cy, k):
    """Reference OpenCV projection of camera-space points (OpenCV axes: z forward, y down)."""
    k1, k2, k3, k4, p1, p2 = k
    x, y = points_cam[:, 0] / points_cam[:, 2], points_cam[:, 1] / points_cam[:, 2]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3 + k4 * r2**4
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return fx * xd + cx, fy * yd + cy


def test_distorted_camera_rays_reproject_to_their_pixels():
    k = [-0.25, 0.08, -0.01, 0.002, 0.003, -0.002]
    fx, fy, cx, cy = 40.0, 42.0, 20.5, 14.0
    cams = Cameras(torch.eye(4)[None], torch.tensor([fx]), torch.tensor([fy]), torch.tensor([cx]), torch.tensor([cy]),
                   40, 30, distortion=torch.tensor([k]))
    px, py = torch.meshgrid(torch.arange(40.0) + 0.5, torch.arange(30.0) + 0.5, indexing="xy")
    px, py = px.reshape(-1), py.reshape(-1)
    _, dirs = cams.generate_rays(torch.zeros_like(px, dtype=torch.long), px, py)
    points_cv = (dirs * torch.tensor([1.0, -1.0, -1.0])).double().numpy() * 3.0  # OpenGL -> OpenCV axes
    u, v = _project_opencv(points_cv, fx, fy, cx, cy, k)
    assert np.abs(u - px.numpy()).max() < 1e-3 and np.abs(v - py.numpy()).max() < 1e-3
    plain = Cameras(cams.c2w, cams.fx, cams.fy, cams.cx, cams.cy, 40, 30)
    assert (plain.generate_rays(torch.zeros(1, dtype=torch.long), px[:1], py[:1])[1] - dirs[:1]).abs().max() > 1e-3


def test_fisheye_undistortion_inverts_the_equidistant_model():
    k = torch.tensor([[0.05, -0.01, 0.002, 0.0, 0.0, 0.0]]).expand(200, 6)
    x, y = torch.rand(200) * 1.6 - 0.8, torch.rand(200) * 1.6 - 0.8
    xd, yd = distort(x, y, k, fisheye=True)
    theta = torch.atan(torch.sqrt(x * x + y * y))
    theta_d = theta * (1 + 0.05 * theta**2 - 0.01 * theta**4 + 0.002 * theta**6)
    assert torch.allclose(torch.sqrt(xd * xd + yd * yd), theta_d, atol=1e-6)
    u, v = undistort(xd, yd, k, fisheye=True)
    assert torch.allclose(u, x, atol=1e-5) and torch.allclose(v, y, atol=1e-5)


def _write_images(folder, names, rng):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        iio.imwrite(folder / name, (rng.random((H, W, 3)) * 255).astype(np.uint8))


def _pose(i):
    angle = i * 0.7
    c2w = np.eye(4)
    c2w[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    c2w[:3, 3] = [4 * np.sin(angle), 0.5 * i, 4 * np.cos(angle)]
    return c2w


def test_transforms_json_intrinsics_distortion_masks_split_and_normalization(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"f{i:02d}.png" for i in range(10)]
    _write_images(tmp_path / "images", names, rng)
    iio.imwrite(tmp_path / "mask.png", np.full((H, W), 255, np.uint8) * (np.arange(W) < 8)[None])
    frames = [{"file_path": f"images/{n}", "transform_matrix": _pose(i).tolist()} for i, n in enumerate(names)]
    frames[3].update({"fl_x": 30.0, "mask_path": "mask.png"})
    meta = {"fl_x": 20.0, "fl_y": 22.0, "cx": 8.0, "cy": 6.0, "w": W, "h": H, "k1": -0.1, "p2": 0.01,
            "scale": 0.25, "offset": [0.5, 0.5, 0.5], "aabb_scale": 4, "frames": frames[::-1]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    assert detect_format(tmp_path) == "transforms"
    train, test = load_scene(tmp_path, "train"), load_scene(tmp_path, "test")
    assert test.names == ["f00", "f08"] and len(train.names) == 8 and "f03" in train.names
    i3 = train.names.index("f03")
    assert train.cameras.fx[i3] == 30.0 and train.cameras.fx[0] == 20.0 and train.cameras.fy[0] == 22.0
    assert train.cameras.distortion[0].tolist() == pytest.approx([-0.1, 0, 0, 0, 0, 0.01])
    assert train.images.shape == (8, H, W, 4) and train.images[i3, :, :8, 3].min() == 1
    assert train.images[i3, :, 8:, 3].max() == 0
    # Instant-NGP: x * 0.25 + 0.5 in [0, 1] -> box [-1, 1]: x * 0.5
    np.testing.assert_allclose(train.cameras.c2w[0, :3, 3].numpy(), _pose(1)[:3, 3] * 0.5, atol=1e-6)
    np.testing.assert_allclose(scene_normalization(tmp_path).to_world(train.cameras.c2w[:, :3, 3].numpy()),
                               np.stack([_pose(int(n[1:]))[:3, 3] for n in train.names]), atol=1e-5)
    half = load_scene(tmp_path, "test", downscale=2)
    assert half.images.shape[1:3] == (H // 2, W // 2) and half.cameras.fx[0] == 10.0
    assert half.cameras.distortion is not None


def _rotation_to_qvec(rot):
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(rot).as_quat()[[3, 0, 1, 2]]  # COLMAP order: w, x, y, z


def _colmap_poses(n):
    """World-to-camera (OpenCV) of cameras whose OpenGL camera-to-world is ``_pose(i)``."""
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    return [np.linalg.inv(_pose(i) @ flip) for i in range(n)]


def _write_colmap(folder, names, binary, points):
    folder.mkdir(parents=True)
    params = [20.0, 21.0, 8.0, 6.0, -0.05, 0.01, 0.001, -0.002]  # OPENCV: fx fy cx cy k1 k2 p1 p2
    w2cs = _colmap_poses(len(names))
    if binary:
        (folder / "cameras.bin").write_bytes(struct.pack("<QiiQQ8d", 1, 7, 4, W, H, *params))
        blob = struct.pack("<Q", len(names))
        for i, (name, w2c) in enumerate(zip(names, w2cs)):
            blob += struct.pack("<i4d3di", i + 1, *_rotation_to_qvec(w2c[:3, :3]), *w2c[:3, 3], 7)
            blob += name.encode() + b"\0" + struct.pack("<Q", 1) + struct.pack("<ddq", 1.0, 2.0, -1)
        (folder / "images.bin").write_bytes(blob)
        blob = struct.pack("<Q", len(points))
        for j, p in enumerate(points):
            blob += struct.pack("<Q3d3BdQ", j, *p, 255, 0, 10, 0.5, 2) + struct.pack("<iiii", 1, 0, 2, 0)
        (folder / "points3D.bin").write_bytes(blob)
    else:
        (folder / "cameras.txt").write_text("# comment\n7 OPENCV %d %d %s\n" % (W, H, " ".join(map(str, params))))
        lines = ["# header"]
        for i, (name, w2c) in enumerate(zip(names, w2cs)):
            q, t = _rotation_to_qvec(w2c[:3, :3]), w2c[:3, 3]
            lines += [f"{i + 1} {' '.join(str(float(v)) for v in q)} {' '.join(str(float(v)) for v in t)} 7 {name}", "1.0 2.0 -1" if i else ""]
        (folder / "images.txt").write_text("\n".join(lines) + "\n")
        (folder / "points3D.txt").write_text("".join(f"{j} {p[0]} {p[1]} {p[2]} 255 0 10 0.5 1 0 2 0\n"
                                                     for j, p in enumerate(points)))


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_model_binary_and_text(tmp_path, binary):
    rng = np.random.default_rng(1)
    names = [f"img{i:02d}.jpg".replace(".jpg", ".png") for i in range(9)]
    _write_images(tmp_path / "images", names, rng)
    points = rng.uniform(-2, 2, (50, 3)) + [10.0, 0, 0]
    _write_colmap(tmp_path / "sparse" / "0", names, binary, points)
    model = read_colmap_model(tmp_path / "sparse" / "0")
    assert model.cameras[7].model == "OPENCV" and len(model.images) == 9 and model.xyz.shape == (50, 3)
    assert detect_format(tmp_path) == "colmap"
    scene = load_scene(tmp_path, "train", downscale=2)
    assert len(scene.names) == 7 and scene.images.shape == (7, H // 2, W // 2, 3)
    assert scene.cameras.fx[0] == 10.0 and scene.cameras.distortion[0].tolist() == pytest.approx(
        [-0.05, 0.01, 0, 0, 0.001, -0.002])
    box = scene.points.xyz.numpy()
    lo, hi = np.percentile(box, [2, 98], axis=0)  # robust box -> [-1, 1] along its longest side
    assert (lo >= -1 - 1e-5).all() and (hi <= 1 + 1e-5).all() and (hi - lo).max() == pytest.approx(2.0, abs=1e-5)
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-5)
    assert scene.points.rgb[0].tolist() == pytest.approx([1.0, 0.0, 10 / 255])
    # every point's track: images 1 and 2; image 1 (img00) is held out, image 2 (img01) is train view 0
    assert scene.points.tracks.tolist() == [[j, 0] for j in range(50)]
    # per-view depth bounds in box units from the points (depth_bounds_from_points is checked in test_realdata)
    assert scene.near_far.shape == (7, 2) and (scene.near_far[:, 0] < scene.near_far[:, 1]).all()
    assert torch.equal(scene.near_far, depth_bounds_from_points(scene.cameras, scene.points.xyz))
    world = scene.normalization.to_world(scene.cameras.c2w[:, :3, 3].numpy())
    np.testing.assert_allclose(world, np.stack([_pose(i)[:3, 3] for i in range(1, 8)]), atol=1e-4)
    np.testing.assert_allclose(scene.cameras.c2w[:, :3, :3].numpy(), np.stack([_pose(i)[:3, :3] for i in range(1, 8)]),
                               atol=1e-5)


@pytest.mark.parametrize("same_points", [True, False])
def test_a_transforms_json_takes_the_tracks_of_the_colmap_model_beside_it_when_its_points_are_the_ply(
        tmp_path, same_points):
    """``omnifield process`` / ``ns-process-data`` folders: transforms.json + sparse_pc.ply + a COLMAP model."""
    from omnifield.io.points import save_points_ply

    rng = np.random.default_rng(4)
    names = [f"img{i:02d}.png" for i in range(9)]
    _write_images(tmp_path / "images", names, rng)
    points = rng.uniform(-2, 2, (30, 3)) + [10.0, 0, 0]
    _write_colmap(tmp_path / "sparse" / "0", names, True, points)
    ply_points = points if same_points else points[::-1].copy()  # another order: the tracks would not fit
    save_points_ply(tmp_path / "sparse_pc.ply", 3.0 * ply_points, np.full((30, 3), 0.5, np.float32))
    frames = [{"file_path": f"images/{n}", "transform_matrix": _pose(i).tolist()} for i, n in enumerate(names)]
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 20.0, "fl_y": 20.0, "cx": 8.0, "cy": 6.0, "w": W,
                                                          "h": H, "frames": frames, "ply_file_path": "sparse_pc.ply"}))
    tracks = load_scene(tmp_path, "train").points.tracks
    assert tracks.tolist() == [[j, 0] for j in range(30)] if same_points else tracks is None


def test_quaternion_rotation_matches_scipy():
    from scipy.spatial.transform import Rotation

    q = np.random.default_rng(2).normal(size=(5, 4))
    expected = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()
    np.testing.assert_allclose(qvec_to_rotation(q), expected, atol=1e-12)


def test_blender_dispatch_and_clear_errors(tmp_path):
    assert detect_format("data/lego_200", "test") == "blender"
    assert load_scene("data/lego_200", "test", downscale=4).images.shape[1:3] == (50, 50)
    with pytest.raises(OmnifieldError, match="no transforms_train.json, transforms.json or COLMAP"):
        load_scene(tmp_path)
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(OmnifieldError, match="transforms.json: malformed JSON"):
        load_scene(tmp_path)
    (tmp_path / "transforms.json").unlink()
    (tmp_path / "sparse").mkdir()
    (tmp_path / "sparse" / "cameras.bin").write_bytes(b"\x01")
    with pytest.raises(OmnifieldError, match="cameras.bin: truncated"):
        load_scene(tmp_path)
