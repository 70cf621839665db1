"""Real captures: the LLFF reader, per-view depth bounds and sparse points on ``Scene``, one held-out split,
and splat training on them (initialisation from the capture, random background, --downscale)."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from omnifield.apps.splat import SplatTrainConfig, train_splat
from omnifield.apps.splat.init import points_from_views
from omnifield.apps.splat.train import initial_scene, resolve_init
from omnifield.data.llff import llff_to_opengl
from omnifield.data.scene import depth_bounds_from_points, detect_format, load_scene, scene_normalization
from omnifield.data.sparse_depth import SparseDepth
from omnifield.data.triangulate import triangulate_views
from omnifield.engine import LoopConfig
from omnifield.errors import OmnifieldError
from omnifield.io.points import save_points_ply
from omnifield.renderers.cameras import Cameras

FERN = Path(__file__).resolve().parents[1] / "data" / "fern"


def _reference_opengl(row: np.ndarray) -> np.ndarray:
    """Plain conversion of one poses_bounds row: LLFF columns (down, right, backwards) -> (right, up, backwards)."""
    m = row[:15].reshape(3, 5)
    down, right, back, centre = m[:, 0], m[:, 1], m[:, 2], m[:, 3]
    c2w = np.eye(4)
    for j, column in enumerate([right, -down, back, centre]):
        c2w[:3, j] = column
    return c2w


def test_llff_fern_conversion_split_and_geometry():
    table = np.load(FERN / "poses_bounds.npy")
    assert detect_format(FERN) == "llff"
    test = load_scene(FERN, "test")
    train = load_scene(FERN, "train")
    assert test.names == ["image000", "image008", "image016"] and len(train.names) == 17
    assert not set(test.names) & set(train.names)
    assert test.images.shape == (3, 378, 504, 3)
    norm = scene_normalization(FERN)
    assert norm == test.normalization
    for k, i in enumerate([0, 8, 16]):
        ref = _reference_opengl(table[i])
        np.testing.assert_allclose(test.cameras.c2w[k, :3, :3].numpy(), ref[:3, :3], atol=1e-5)
        np.testing.assert_allclose(norm.to_world(test.cameras.c2w[k, :3, 3].numpy()[None])[0], ref[:3, 3], atol=1e-4)
        assert float(test.cameras.fx[k]) == pytest.approx(table[i, 14] * 504 / table[i, 9], rel=1e-6)
        np.testing.assert_allclose(test.near_far[k].numpy(), table[i, 15:17] * norm.scale, rtol=1e-5)
    rot = train.cameras.c2w[:, :3, :3].double()
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3, dtype=torch.float64).expand(17, 3, 3), atol=1e-4)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(17, dtype=torch.float64), atol=1e-4)  # proper rotations
    # Every camera sees the points at every view's near bound in front of it and inside its image.
    cams = train.cameras
    near_points = cams.c2w[:, :3, 3] - cams.c2w[:, :3, 2] * train.near_far[:, :1]
    for i in range(len(cams)):
        local = (near_points - cams.c2w[i, :3, 3]) @ cams.c2w[i, :3, :3]  # OpenGL camera coordinates
        assert (local[:, 2] < 0).all()
        u = cams.cx[i] + cams.fx[i] * local[:, 0] / -local[:, 2]
        v = cams.cy[i] - cams.fy[i] * local[:, 1] / -local[:, 2]
        assert ((u > 0) & (u < cams.width) & (v > 0) & (v < cams.height)).all()


def test_llff_to_opengl_matches_the_plain_reference():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(4, 17))
    from scipy.spatial.transform import Rotation

    rots = Rotation.random(4, random_state=1).as_matrix()
    mats = np.concatenate([rots, rng.normal(size=(4, 3, 1)), np.ones((4, 3, 1))], axis=2)
    rows[:, :15] = mats.reshape(4, 15)
    np.testing.assert_allclose(llff_to_opengl(mats[:, :, :4]), np.stack([_reference_opengl(r) for r in rows]))


def _write_llff(root: Path, n: int, size=(12, 16), with_half: tuple[int, int] | None = None) -> np.ndarray:
    rng = np.random.default_rng(3)
    (root / "images").mkdir(parents=True)
    for i in range(n):
        iio.imwrite(root / "images" / f"p{i:02d}.png", (rng.random((*size, 3)) * 255).astype(np.uint8))
    if with_half is not None:
        (root / "images_2").mkdir()
        for i in range(n):
            iio.imwrite(root / "images_2" / f"p{i:02d}.jpg", np.full((*with_half, 3), 200, np.uint8))
    rows = np.zeros((n, 17))
    for i in range(n):
        m = np.zeros((3, 5))
        m[:, :3] = [[0, 1, 0], [1, 0, 0], [0, 0, -1]]  # down = +y, right = +x, backwards = -z: looks along +z
        m[:, 3] = [0.1 * i, 0, 0]
        m[:, 4] = [size[0] * 4, size[1] * 4, 50.0]  # originals 4x larger
        rows[i, :15] = m.reshape(-1)
        rows[i, 15:] = [2.0, 10.0]
    np.save(root / "poses_bounds.npy", rows)
    return rows


def test_llff_downscale_folder_resize_and_clear_errors(tmp_path):
    _write_llff(tmp_path / "a", 9, with_half=(6, 8))
    scene = load_scene(tmp_path / "a", "train", downscale=2)
    assert scene.images.shape == (7, 6, 8, 3) and float(scene.images.mean()) == pytest.approx(200 / 255, abs=1e-3)
    assert float(scene.cameras.fx[0]) == pytest.approx(50.0 * 8 / 64)
    c2w = scene.cameras.c2w[0]
    assert torch.allclose(c2w[:3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0])))  # OpenGL, looking along +z
    _write_llff(tmp_path / "b", 9, with_half=(4, 8))  # wrong size: resized from images/ instead
    resized = load_scene(tmp_path / "b", "test", downscale=2)
    full = load_scene(tmp_path / "b", "test")
    assert torch.allclose(resized.images, torch.nn.functional.avg_pool2d(full.images.permute(0, 3, 1, 2), 2)
                          .permute(0, 2, 3, 1), atol=1e-6)
    assert float(resized.cameras.fx[0]) == pytest.approx(float(full.cameras.fx[0]) / 2)
    rows = _write_llff(tmp_path / "c", 5)
    np.save(tmp_path / "c" / "poses_bounds.npy", rows[:4])
    with pytest.raises(OmnifieldError, match="4 poses for 5 images"):
        load_scene(tmp_path / "c")
    np.save(tmp_path / "c" / "poses_bounds.npy", rows[:, :15])
    with pytest.raises(OmnifieldError, match="N rows of 17 numbers"):
        load_scene(tmp_path / "c")


def test_depth_bounds_from_points_are_percentiles_of_visible_depths():
    cams = Cameras(torch.eye(4)[None].repeat(2, 1, 1), torch.full((2,), 10.0), torch.full((2,), 10.0),
                   torch.full((2,), 5.0), torch.full((2,), 5.0), 10, 10)
    cams.c2w[1, :3, 3] = torch.tensor([100.0, 0, 0])  # the second camera sees none of the points
    depths = torch.arange(1, 102, dtype=torch.float32)
    pts = torch.stack([torch.zeros(101), torch.zeros(101), -depths], -1)
    behind_and_outside = torch.tensor([[0.0, 0, 5], [50.0, 0, -2]])
    bounds = depth_bounds_from_points(cams, torch.cat([pts, behind_and_outside]), percentiles=(10.0, 90.0))
    assert bounds[0].tolist() == pytest.approx([11.0, 91.0]) and bounds[1].tolist() == pytest.approx([11.0, 91.0])
    assert depth_bounds_from_points(cams, torch.tensor([[0.0, 0, 5]])) is None


def _transforms_with_points(root: Path, meta_extra: dict) -> np.ndarray:
    rng = np.random.default_rng(4)
    (root / "images").mkdir(parents=True)
    frames = []
    for i in range(9):
        iio.imwrite(root / "images" / f"f{i}.png", (rng.random((8, 8, 3)) * 255).astype(np.uint8))
        c2w = np.eye(4)
        c2w[:3, 3] = [0.2 * i, 0, 4.0]
        frames.append({"file_path": f"images/f{i}.png", "transform_matrix": c2w.tolist()})
    xyz = rng.uniform(-1, 1, (200, 3))
    save_points_ply(root / "sparse_pc.ply", xyz, rng.random((200, 3)))
    (root / "transforms.json").write_text(json.dumps({"fl_x": 8.0, "w": 8, "h": 8, "frames": frames,
                                                      "ply_file_path": "sparse_pc.ply", **meta_extra}))
    return xyz


def test_transforms_json_points_near_far_aabb_scale_and_ngp_scale_offset(tmp_path):
    xyz = _transforms_with_points(tmp_path, {"scale": 0.5, "offset": [0.5, 0.4, 0.5], "aabb_scale": 4})
    scene = load_scene(tmp_path, "train")
    # Instant-NGP: x * 0.5 + offset in [0, 1]^3, re-centred onto [-1, 1]^3: box = 2 (x * 0.5 + offset) - 1
    ref = 2 * (xyz * 0.5 + [0.5, 0.4, 0.5]) - 1
    np.testing.assert_allclose(scene.points.xyz.numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(scene.cameras.c2w[0, :3, 3].numpy(), 2 * (np.array([0.2, 0, 4]) * 0.5 + [0.5, 0.4, 0.5]) - 1,
                               atol=1e-5)
    assert scene.aabb_scale == 4.0 and scene.near_far.shape == (7, 2)
    # reference near/far of the first training view (f1): z-depths of the points it sees, 1st / 99th percentile
    cam = scene.cameras.c2w[0, :3, 3].numpy()
    local = scene.points.xyz.double().numpy() - cam
    depth = -local[:, 2]
    u, v = 4 + 8 * local[:, 0] / depth, 4 - 8 * local[:, 1] / depth
    seen = (depth > 0) & (u >= 0) & (u < 8) & (v >= 0) & (v < 8)
    np.testing.assert_allclose(scene.near_far[0].numpy(), np.percentile(depth[seen], [1, 99]), rtol=1e-5)
    assert detect_format(tmp_path) == "transforms"
    (tmp_path / "transforms.json").write_text(json.dumps({**json.loads((tmp_path / "transforms.json").read_text()),
                                                          "aabb_scale": "big"}))
    with pytest.raises(OmnifieldError, match="aabb_scale"):
        load_scene(tmp_path)


def test_ngp_offset_without_scale_uses_instant_ngp_default_scale(tmp_path):
    xyz = _transforms_with_points(tmp_path, {"offset": [0.5, 0.5, 0.5]})
    scene = load_scene(tmp_path, "test")
    np.testing.assert_allclose(scene.points.xyz.numpy(), 2 * (xyz * 0.33 + 0.5) - 1, atol=1e-5)
    assert scene.aabb_scale is None


def test_colmap_scene_points_near_far_and_splat_init_default(tmp_path):
    _transforms_with_points(tmp_path, {})
    scene = load_scene(tmp_path, "train")
    assert resolve_init("auto", scene) == "scene"
    cfg = SplatTrainConfig(init="scene", aabb=(-1.0,) * 3 + (1.0,) * 3, sh_degree=0)
    gaussians, _, _ = initial_scene(cfg, torch.Generator().manual_seed(0), scene)
    assert torch.equal(gaussians.means, scene.points.xyz)
    no_points = type(scene)(scene.images, scene.cameras, scene.names)
    assert resolve_init("auto", no_points) == "triangulate"  # photos without alpha: a real capture
    with_alpha = type(scene)(torch.cat([scene.images, torch.ones_like(scene.images[..., :1])], -1), scene.cameras,
                             scene.names)
    assert resolve_init("auto", with_alpha) == "random"
    with pytest.raises(OmnifieldError, match="no sparse points"):
        resolve_init("scene", no_points)


def test_init_points_file_is_read_in_world_units(tmp_path):
    xyz = _transforms_with_points(tmp_path, {"scale": 0.5, "offset": [0.5, 0.4, 0.5]})
    scene = load_scene(tmp_path, "train")
    cfg = SplatTrainConfig(init="points", init_points=str(tmp_path / "sparse_pc.ply"), sh_degree=0)
    gaussians, init, _ = initial_scene(cfg, torch.Generator().manual_seed(0), scene)
    assert init == "points"
    np.testing.assert_allclose(gaussians.means.detach().numpy(), 2 * (xyz * 0.5 + [0.5, 0.4, 0.5]) - 1, atol=1e-5)


def test_triangulated_points_of_fern_lie_within_the_published_depth_bounds():
    """The LLFF depth bounds come from the original COLMAP reconstruction: independent ground truth."""
    data = load_scene(FERN, "train", downscale=2)
    points = triangulate_views(data.images, data.cameras)
    xyz, rgb = points.xyz, points.rgb
    assert len(xyz) >= 300 and rgb.shape == xyz.shape and 0.0 <= float(rgb.min()) <= float(rgb.max()) <= 1.0
    # every point is tracked in at least 3 views, each of which sees it in its image, in front of the camera
    per_point = torch.bincount(points.tracks[:, 0], minlength=len(xyz))
    assert int(per_point.min()) >= 3 and int(points.tracks[:, 1].max()) < len(data.images)
    assert len(SparseDepth.from_tracks(points, data.cameras)) == len(points.tracks)
    c2w = data.cameras.c2w.double()
    local = torch.einsum("nji,npj->npi", c2w[:, :3, :3], xyz.double()[None] - c2w[:, None, :3, 3])
    depth, bounds = -local[..., 2], data.near_far.double()
    inside = (depth >= 0.9 * bounds[:, None, 0]) & (depth <= 1.1 * bounds[:, None, 1])
    assert float(inside.double().mean()) > 0.98
    # poses far from the photos' (camera centres moved by ~7x the camera spread) triangulate almost nothing
    wrong = data.cameras[torch.arange(len(data.images))]
    wrong.c2w[:, :3, 3] += torch.randn(len(data.images), 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(OmnifieldError, match="poses that do not fit"):
        triangulate_views(data.images, wrong)


def test_points_from_views_lie_on_their_pixels_rays_within_the_bounds():
    data = load_scene(FERN, "train", downscale=8)
    g = torch.Generator().manual_seed(0)
    pts, colours = points_from_views(data.images, data.cameras, data.near_far, 500, g)
    g = torch.Generator().manual_seed(0)  # the same draws, to know each point's view and pixel
    v, h, w = data.images.shape[:3]
    view, row, col = (torch.randint(0, n, (500,), generator=g) for n in (v, h, w))
    c2w = data.cameras.c2w[view]
    local = ((pts - c2w[:, :3, 3])[:, None, :] @ c2w[:, :3, :3])[:, 0]
    depth = -local[:, 2]
    u = data.cameras.cx[view] + data.cameras.fx[view] * local[:, 0] / depth
    vv = data.cameras.cy[view] - data.cameras.fy[view] * local[:, 1] / depth
    assert torch.allclose(u, col + 0.5, atol=1e-2) and torch.allclose(vv, row + 0.5, atol=1e-2)
    near, far = data.near_far[view].unbind(-1)
    assert ((depth >= near * 0.999) & (depth <= far * 1.001)).all()
    assert torch.equal(colours, data.images[view, row, col])


def _train_splat(data, out, steps: int = 3, **kw) -> dict:
    """``train_splat`` for ``steps`` with small settings (``kw`` override them)."""
    cfg = SplatTrainConfig(**{"downscale": 8, "n_init": 500, "sh_degree": 0, **kw})
    return train_splat(data, out, cfg, LoopConfig(steps=steps, progress=False))


def test_splat_training_on_fern_holds_out_every_8th_view_at_the_chosen_downscale(tmp_path):
    torch.set_num_threads(1)
    metrics = _train_splat(FERN, tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(config["train_views"]) == 17
    assert not {"image000", "image008", "image016"} & set(config["train_views"])
    assert config["options"]["init"] == "views" and metrics["n_views"] == 3
    render = iio.imread(tmp_path / "run" / "renders" / "test" / "000.png")
    assert render.shape == (47, 63, 3)  # 504x378 / 8
    with pytest.raises(OmnifieldError, match="downscale"):
        _train_splat(FERN, tmp_path / "bad", downscale=0)


def test_random_background_makes_the_gaussians_cover_photos_without_alpha(tmp_path):
    """A plane, black for x < 0 and white for x > 0, photographed without alpha. Trained on a fixed black
    (white) background, the Gaussians over the black (white) half could fade away; on a random background
    both halves must end up covered (the starting Gaussians cover 57 %)."""
    torch.set_num_threads(1)
    size, focal, n = 16, 16.0, 6
    (tmp_path / "images").mkdir()
    frames = []
    for i, x0 in enumerate(np.linspace(-0.3, 0.3, n)):
        c2w = np.eye(4)
        c2w[:3, 3] = [x0, 0.0, 2.0]
        x_world = x0 + (np.arange(size) + 0.5 - size / 2) / focal * 2.0  # the plane z = 0 is 2 away
        image = np.repeat(np.repeat((x_world > 0)[None, :, None], size, 0), 3, 2).astype(np.uint8) * 255
        iio.imwrite(tmp_path / "images" / f"v{i}.png", image)
        frames.append({"file_path": f"images/v{i}.png", "transform_matrix": c2w.tolist()})
    grid = np.stack(np.meshgrid(np.linspace(-1.5, 1.5, 24), np.linspace(-1.5, 1.5, 24)), -1).reshape(-1, 2)
    save_points_ply(tmp_path / "pc.ply", np.concatenate([grid, np.zeros((len(grid), 1))], 1),
                    np.full((len(grid), 3), 0.5))
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": focal, "w": size, "h": size, "frames": frames,
                                                          "ply_file_path": "pc.ply"}))
    _train_splat(tmp_path, tmp_path / "run", steps=200, downscale=1, evaluate=False, refine_start=10**6)
    from omnifield.io.splat_run import load_splat_run
    from omnifield.renderers.splat import SplatRenderer

    scene, data = load_splat_run(tmp_path / "run"), load_scene(tmp_path, "train")
    black = SplatRenderer(background=(0.0, 0.0, 0.0))
    with torch.no_grad():
        renders = [black.render_camera(scene, data.cameras, i) for i in range(len(data.names))]
    alpha = torch.stack([r["alpha"] for r in renders])
    white = data.images[..., 0] > 0.5
    assert float(alpha[white].mean()) > 0.9 and float(alpha[~white].mean()) > 0.9
    rgb = torch.stack([r["rgb"][..., 0] for r in renders])
    assert float(rgb[white].mean()) > float(rgb[~white].mean()) + 0.2  # and the colours head the right way
