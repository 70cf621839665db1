"""Regularisers of sparse captures: sparse depth (samples from point tracks, the splat renderer's depth, the loss
and its pull, for the splats and the NeRF) and the scale-ratio penalty on spiky Gaussians."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from omnifield.apps.recon.config import TrainConfig
from omnifield.apps.recon.run import Run
from omnifield.apps.recon.trainer import Trainer
from omnifield.apps.splat import SplatTask
from omnifield.apps.splat.config import PHOTO_MAX_SCALE_RATIO, SPARSE_DEPTH_WEIGHT, resolve_photo_regularisers
from omnifield.cli import main
from omnifield.config import replace_config
from omnifield.data.blender import PosedImages
from omnifield.data.scene import ScenePoints
from omnifield.data.sparse_depth import SparseDepth
from omnifield.errors import OmnifieldError
from omnifield.fields import field_config
from omnifield.fields.gaussians import GaussianScene
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.io.checkpoint import load_checkpoint
from omnifield.io.splat_run import CHECKPOINT
from omnifield.losses.depth import sample_image, sparse_depth_loss
from omnifield.losses.splat_shape import scale_ratio_loss
from omnifield.renderers.cameras import Cameras, look_at
from omnifield.renderers.splat import SplatRenderer
from omnifield.renderers.volume import VolumeRendererConfig
from tests._processes import ctrl_c_at
from tests.conftest import lego_subset
from tests.test_recon_cli import TINY as NERF_TINY
from tests.test_splat_training import _train, tiny_data  # noqa: F401 - fixture re-used

W, H, F = 40, 30, 35.0


def _cameras(n: int = 1, dtype=torch.float32) -> Cameras:
    """``n`` cameras at x = 0, 0.5, 1, ... looking down -z (OpenGL), focal F, centred principal point."""
    c2w = torch.eye(4, dtype=dtype).repeat(n, 1, 1)
    c2w[:, 0, 3] = 0.5 * torch.arange(n, dtype=dtype)
    full = lambda v: torch.full((n,), float(v), dtype=dtype)  # noqa: E731
    return Cameras(c2w, full(F), full(F), full(W / 2), full(H / 2), W, H)


def test_samples_are_the_points_pixels_and_depths_in_the_views_that_saw_them():
    cameras = _cameras(3)
    xyz = torch.tensor([[0.2, 0.1, -2.0], [0.5, -0.3, -4.0], [0.0, 0.0, 1.0], [9.0, 0.0, -1.0]])
    tracks = torch.tensor([[0, 0], [0, 2], [1, 1], [2, 0], [3, 1], [1, 0]])  # point 2 is behind, 3 outside
    depth = SparseDepth.from_tracks(ScenePoints(xyz, torch.zeros_like(xyz), tracks), cameras)
    assert depth.offsets.tolist() == [0, 2, 3, 4]
    uv, z = depth.view(0)  # points 0 and 1 in camera 0 (order of the tracks kept)
    torch.testing.assert_close(uv, torch.tensor([[W / 2 + F * 0.2 / 2, H / 2 - F * 0.1 / 2],
                                                 [W / 2 + F * 0.5 / 4, H / 2 + F * 0.3 / 4]]))
    torch.testing.assert_close(z, torch.tensor([2.0, 4.0]))
    uv, z = depth.view(2)  # camera 2 sits at x = 1: point 0 is 0.8 to its left
    torch.testing.assert_close(uv, torch.tensor([[W / 2 - F * 0.8 / 2, H / 2 - F * 0.1 / 2]]))
    restored = SparseDepth.from_tensors(depth.tensors("d/"), "d/")
    assert all(torch.equal(a, b) for a, b in zip((restored.offsets, restored.uv, restored.depth),
                                                 (depth.offsets, depth.uv, depth.depth)))
    with pytest.raises(OmnifieldError, match="tracks"):
        SparseDepth.from_tracks(ScenePoints(xyz, xyz), cameras)
    with pytest.raises(OmnifieldError, match="view 7"):
        SparseDepth.from_tracks(ScenePoints(xyz, xyz, torch.tensor([[0, 7]])), cameras)


def test_bilinear_samples_hit_pixel_centres_and_interpolate_between_them():
    image = torch.arange(12.0).reshape(3, 4)
    uv = torch.tensor([[0.5, 0.5], [3.5, 2.5], [1.0, 0.5], [2.5, 1.0]])
    torch.testing.assert_close(sample_image(image, uv), torch.tensor([0.0, 11.0, 0.5, 4.0]))


def test_loss_is_the_scaled_disparity_error_and_ignores_empty_pixels():
    depth = torch.full((3, 4), 2.0)
    depth[0, 0] = 0.0  # nothing drawn: disparity 0
    uv, target = torch.tensor([[2.5, 1.5], [0.5, 0.5]]), torch.tensor([4.0, 5.0])
    expected = 1.5 * ((0.5 - 0.25) + (0.2 - 0.0)) / 2
    assert float(sparse_depth_loss(depth, uv, target, scene_scale=1.5)) == pytest.approx(expected)
    assert float(sparse_depth_loss(depth, uv[:0], target[:0], 1.0)) == 0.0


def _layer(z: float, dtype=torch.float32) -> GaussianScene:
    """An opaque layer of Gaussians on the plane at depth ``z`` in front of the first of :func:`_cameras`."""
    xs, ys = torch.meshgrid(torch.linspace(-1.5, 1.5, 24), torch.linspace(-1.2, 1.2, 20), indexing="ij")
    means = torch.stack([xs.flatten(), ys.flatten(), torch.full((xs.numel(),), -z)], -1)
    n = len(means)
    return GaussianScene(means, torch.full((n, 3), math.log(0.12)), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                         torch.full((n,), 4.0), torch.zeros(n, 1, 3)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["native", "twin"])
def test_rendered_depth_of_a_layer_is_its_distance_and_leaves_the_colours_alone(dtype):
    renderer, cameras = SplatRenderer(background=(0.2, 0.3, 0.4)), _cameras(dtype=dtype)
    scene = _layer(2.5, dtype)
    with_depth = renderer.render_camera(scene, cameras, 0, depth=True)
    plain = renderer.render_camera(scene, cameras, 0)
    inner = with_depth["alpha"][5:-5, 5:-5].detach()
    assert float(inner.min()) > 0.99 and with_depth["depth"].dtype == dtype
    torch.testing.assert_close(with_depth["depth"][5:-5, 5:-5], torch.full_like(inner, 2.5), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(with_depth["rgb"], plain["rgb"])
    assert with_depth["rgb"].shape == (H, W, 3)


def test_the_native_kernel_and_the_twin_render_the_same_depth():
    scene32 = _layer(2.0)
    scene32.means.data[:, 2] -= torch.rand(len(scene32), generator=torch.Generator().manual_seed(0))  # a bumpy layer
    scene64 = copy.deepcopy(scene32).double()
    native = SplatRenderer().render_camera(scene32, _cameras(), 0, depth=True)["depth"].detach()
    twin = SplatRenderer().render_camera(scene64, _cameras(dtype=torch.float64), 0, depth=True)["depth"].detach()
    torch.testing.assert_close(native.double(), twin, rtol=1e-4, atol=1e-4)


def test_the_loss_moves_a_surface_to_the_depth_of_the_points():
    """Only the depth loss, on the depths of the means: a layer at depth 2 whose pixels' points say 3 goes to 3."""
    scene, cameras, renderer = _layer(2.0), _cameras(), SplatRenderer()
    scene.means.register_hook(lambda grad: grad * torch.tensor([0.0, 0.0, 1.0]))
    g = torch.Generator().manual_seed(0)
    uv = torch.rand(40, 2, generator=g) * torch.tensor([W - 16.0, H - 12.0]) + torch.tensor([8.0, 6.0])
    target = torch.full((40,), 3.0)
    optimizer = torch.optim.Adam([scene.means], lr=0.02)
    for _ in range(150):
        optimizer.zero_grad()
        sparse_depth_loss(renderer.render_camera(scene, cameras, 0, depth=True)["depth"], uv, target, 1.0).backward()
        optimizer.step()
    with torch.no_grad():
        reached = sample_image(renderer.render_camera(scene, cameras, 0, depth=True)["depth"], uv)
    torch.testing.assert_close(reached, target, rtol=0.03, atol=0.0)


def test_default_regularisers_by_scene_type():
    """Depth for photos; the scale ratio for 360-degree captures only; explicit values always win."""
    assert resolve_photo_regularisers(None, None, "unbounded") == (SPARSE_DEPTH_WEIGHT, PHOTO_MAX_SCALE_RATIO)
    assert resolve_photo_regularisers(None, None, "forward") == (SPARSE_DEPTH_WEIGHT, 0.0)
    assert resolve_photo_regularisers(None, None, "object") == (0.0, 0.0)
    assert resolve_photo_regularisers(0.5, 3.0, "object") == (0.5, 3.0)


def _tracks_of_the_tiny_scene(images, cameras):
    """Stand-in for triangulation on the tiny synthetic scene: points on its surface seen by every view."""
    xyz = torch.rand(80, 3, generator=torch.Generator().manual_seed(3)) - 0.5
    tracks = torch.cartesian_prod(torch.arange(80), torch.arange(len(images)))
    return ScenePoints(xyz, torch.full_like(xyz, 0.5), tracks)


# the initial points' triangulation and the depth samples' (when the initial points have no tracks)
TRIANGULATORS = ("omnifield.apps.splat.train.triangulate_views", "omnifield.data.sparse_depth.triangulate_views")


@pytest.mark.usefixtures("one_thread")  # bit for bit: the native backward sums in thread order
def test_a_run_with_the_depth_loss_resumes_bit_for_bit(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    for where in TRIANGULATORS:
        monkeypatch.setattr(where, _tracks_of_the_tiny_scene)
    kw = {"refine_start": 5, "refine_every": 10, "densify_until": 0.9, "evaluate": False, "depth_weight": 0.05}
    straight = _train(tiny_data, tmp_path / "straight", steps=20, **kw)
    assert straight["steps"] == 20
    parted = tmp_path / "parted"
    with monkeypatch.context() as patch:
        ctrl_c_at(patch, SplatTask, "training_step", step=10)
        with pytest.raises(KeyboardInterrupt):
            _train(tiny_data, parted, steps=20, **kw)
    for where in TRIANGULATORS:  # resuming reads the checkpoint's
        monkeypatch.setattr(where, None)
    _train(tiny_data, parted, steps=20, resume=True, **kw)
    a, meta = load_checkpoint(tmp_path / "straight" / CHECKPOINT)
    b, _ = load_checkpoint(parted / CHECKPOINT)
    assert meta["config"]["options"]["depth_weight"] == 0.05 and len(a["train/depth_depth"]) == 80 * 10
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_an_explicit_weight_fails_clearly_where_no_points_can_be_triangulated(tiny_data, tmp_path,  # noqa: F811
                                                                              monkeypatch):
    def too_few(images, cameras):
        raise OmnifieldError("only 3 points could be triangulated")

    for where in TRIANGULATORS:
        monkeypatch.setattr(where, too_few)
    with pytest.raises(OmnifieldError, match="--depth-weight: only 3 points"):
        _train(tiny_data, tmp_path / "explicit", steps=2, evaluate=False, depth_weight=0.1)
    assert _train(tiny_data, tmp_path / "off", steps=2, evaluate=False, depth_weight=0.0)["steps"] == 2


def test_scale_ratio_penalty_is_zero_up_to_the_ratio_and_linear_beyond():
    log_scales = torch.log(torch.tensor([[1.0, 2.0, 5.0], [1.0, 1.0, 30.0], [0.1, 0.1, 0.1]], requires_grad=False))
    assert float(scale_ratio_loss(log_scales, 10.0)) == pytest.approx((0 + 20 + 0) / 3, rel=1e-5)
    needle = torch.log(torch.tensor([[1.0, 1.0, 30.0]])).requires_grad_()
    scale_ratio_loss(needle, 10.0).backward()
    assert needle.grad[0, 2] > 0 and needle.grad[0, 0] < 0  # shortens the long axis, widens the thin one


def _grey_views_of_a_plane(n_views: int = 4):
    """Views of a uniformly grey world from above (z = 3, looking down), and structure-from-motion points on
    the plane z = 0 seen by every view. The photos cannot tell where the grey surface is; the points can."""
    eye = torch.tensor([[0.3 * (i % 2) - 0.15, 0.3 * (i // 2) - 0.15, 3.0] for i in range(n_views)])
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    full = lambda v: torch.full((n_views,), float(v))  # noqa: E731
    cameras = Cameras(c2w, full(F), full(F), full(W / 2), full(H / 2), W, H)
    grid = torch.stack(torch.meshgrid(torch.linspace(-0.8, 0.8, 9), torch.linspace(-0.6, 0.6, 7), indexing="ij"), -1)
    xyz = torch.cat([grid.reshape(-1, 2), torch.zeros(63, 1)], -1)
    tracks = torch.stack(torch.meshgrid(torch.arange(63), torch.arange(n_views), indexing="ij"), -1).reshape(-1, 2)
    depths = SparseDepth.from_tracks(ScenePoints(xyz, torch.zeros_like(xyz), tracks), cameras)
    return PosedImages(torch.full((n_views, H, W, 3), 0.5), cameras, [f"{i}" for i in range(n_views)]), depths


def _nerf_on(data: PosedImages, depths: SparseDepth, weight: float, path) -> tuple[Trainer, torch.Tensor]:
    """A small hash-grid NeRF trained 80 steps on ``data`` with the sparse depth loss at ``weight``, and the
    mean error of its expected stopping point (ray coordinate) on the rays through the points."""
    torch.manual_seed(0)
    field_cfg = replace_config(field_config("hashgrid"), encoding=HashGridConfig(n_levels=4, log2_hashmap_size=12,
                                                                               max_resolution=32))
    run = Run.create(path, "hashgrid", field_cfg, VolumeRendererConfig(sampler="uniform", n_samples=48),
                     TrainConfig(steps=80, depth_weight=weight, batch_rays=512, target_samples=0), "", 1, data)
    trainer = Trainer(run, data, progress=False, sparse_depth=depths)
    trainer.fit()
    view = torch.repeat_interleave(torch.arange(len(data.images)), depths.offsets.diff())
    origins, dirs = data.cameras.generate_rays(view, depths.uv[:, 0], depths.uv[:, 1])
    forward = -data.cameras.c2w[view, :3, 2]
    points = origins + dirs * (depths.depth / (dirs * forward).sum(-1))[:, None]
    with torch.no_grad():
        out = run.renderer.render_rays(run.field, origins, dirs, unit_depth=True)
    return trainer, (out.unit_depth - run.renderer.unit_depth_of(origins, dirs, points)).abs().mean()


def test_the_nerf_depth_loss_moves_the_surface_to_the_points(tmp_path):
    """Trained on photos that say nothing about depth, a field stops its rays anywhere; with the sparse depth
    loss the rays through the points stop at them (the loss's own rays: 1/8 of each batch more)."""
    data, depths = _grey_views_of_a_plane()
    trainer, with_loss = _nerf_on(data, depths, 1.0, tmp_path / "with")
    _, without = _nerf_on(data, depths, 0.0, tmp_path / "without")
    assert trainer.sparse_depth is depths and len(trainer._batch()[0]) == 512 + 64
    assert float(with_loss) < 0.02 and float(without) > 3 * float(with_loss)


def test_the_nerf_trains_without_the_loss_where_no_points_are_found_unless_asked_for_it(tmp_path, monkeypatch, capsys):
    """Photos of a scene with no points and none triangulable: "auto" says so and trains without the loss (the run
    records 0); an explicit ``--loss.depth-weight`` is one clear line, exit 2."""

    def too_few(images, cameras):
        raise OmnifieldError("only 3 points could be triangulated")

    monkeypatch.setattr("omnifield.data.sparse_depth.triangulate_views", too_few)
    scene = lego_subset(tmp_path / "scene", {"train": 4, "test": 1})
    common = ["train", str(scene), "--steps", "2", "--no-eval", "--scene-type", "unbounded", *NERF_TINY]
    assert main([*common, "--out", str(tmp_path / "auto")]) == 0
    assert "only 3 points could be triangulated; training without the sparse depth loss" in capsys.readouterr().out
    run, _, _ = Run.open(tmp_path / "auto")
    assert run.train_config.depth_weight == 0.0
    assert main([*common, "--out", str(tmp_path / "explicit"), "--loss.depth-weight", "0.1"]) == 2
    assert "--loss.depth-weight: only 3 points could be triangulated" in capsys.readouterr().err
