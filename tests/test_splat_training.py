"""Splat training: density-control semantics, a tiny end-to-end run, initialisation, export CLI."""

from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from omnifield.apps.splat import SplatTrainConfig, train_splat
from omnifield.apps.splat.config import SPARSE_DENSIFY_FROM, resolve_densify_from
from omnifield.apps.splat.density_control import DensityControl, DensityControlConfig
from omnifield.apps.splat.init import points_from_density
from omnifield.apps.splat.train import color_field_lr_factor, make_optimizer
from omnifield.cli import main as cli_main
from omnifield.engine import LoopConfig
from omnifield.errors import OmnifieldError
from omnifield.fields.compact_gaussians import CompactGaussianScene
from omnifield.fields.gaussians import GaussianScene
from omnifield.io.checkpoint import load_checkpoint, save_checkpoint
from omnifield.io.points import read_point_cloud
from omnifield.io.splat_ply import load_splat_ply
from omnifield.io.splat_run import load_splat_run
from omnifield.losses.photometric import s3im_on_pixels
from omnifield.renderers.cameras import Cameras, look_at
from omnifield.renderers.splat import SplatRenderer

pytestmark = pytest.mark.usefixtures("one_thread")


def _scene_for_control() -> GaussianScene:
    """Gaussian 0: small, high grad -> duplicate; 1: large, high grad -> split; 2: faint -> pruned; 3: kept."""
    means = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]])
    log_scales = torch.log(torch.tensor([[0.005] * 3, [0.5] * 3, [0.005] * 3, [0.005] * 3]))
    quats = torch.tensor([[1.0, 0, 0, 0]] * 4)
    opac = torch.logit(torch.tensor([0.5, 0.5, 0.001, 0.5]))
    return GaussianScene(means, log_scales, quats, opac, torch.zeros(4, 4, 3))


def _backward_with_grad(scene, optimizer, grads2d: torch.Tensor) -> dict:
    means2d = scene.means[:, :2] + 0.0
    means2d.retain_grad()
    (means2d * grads2d).sum().backward()
    (scene.opacity_logits.sum() + scene.sh.sum() + scene.log_scales.sum() + scene.quats.sum()).backward()
    optimizer.step()
    return {"means2d": means2d, "radii": torch.tensor([5, 5, 5, 0]), "width": 100, "height": 50}


def test_density_control_duplicates_splits_prunes_with_gsplat_semantics():
    torch.manual_seed(0)
    scene = _scene_for_control()
    optimizer = make_optimizer(scene, scene_scale=1.0)
    control = DensityControl(DensityControlConfig(refine_start_iter=0, refine_every=1, reset_every=1000), 1.0)
    # normalised gradient = |g| * (W/2, H/2): 1e-5 * 50 = 5e-4 > 2e-4 for Gaussians 0-2; 3 is not visible
    grads = torch.tensor([[1e-5, 0.0], [1e-5, 0.0], [1e-5, 0.0], [1.0, 1.0]])
    info = _backward_with_grad(scene, optimizer, grads)
    old_moment = optimizer.state[scene.means]["exp_avg"].clone()
    before, before_scales = scene.means.data.clone(), scene.log_scales.data.exp()
    report = control.step_post_backward(scene, optimizer, info, step=1)
    assert report == {"duplicated": 2, "split": 1, "pruned": 2}
    # kept: original 0, 3 (2 pruned as faint, the duplicate of 2 pruned too), duplicate of 0, two children of 1
    assert len(scene) == 5
    means = scene.means.data
    torch.testing.assert_close(means[:3], before[[0, 3, 0]])
    children = scene.log_scales.data[3:].exp()
    torch.testing.assert_close(children, (before_scales[1] / 1.6).expand(2, 3))
    assert float((means[3:] - before[1]).norm(dim=-1).max()) < 2.5  # sampled from N(mu, Sigma)
    state = optimizer.state[scene.means]
    torch.testing.assert_close(state["exp_avg"][:2], old_moment[[0, 3]])
    assert float(state["exp_avg"][2:].abs().max()) == 0.0
    assert all(len(g["params"][0]) == 5 for g in optimizer.param_groups)


def test_gaussians_no_training_view_drew_for_a_whole_cycle_of_views_are_pruned():
    scene = _scene_for_control()
    scene.opacity_logits.data[2] = 0.0  # not faint: only visibility decides here
    optimizer = make_optimizer(scene, 1.0)
    control = DensityControl(DensityControlConfig(refine_start_iter=0, refine_every=2, reset_every=1000,
                                                  unseen_after=3), 1.0)
    for step in range(1, 5):  # Gaussian 3 is never drawn (radius 0); pruned once 3 steps have not drawn it
        info = _backward_with_grad(scene, optimizer, torch.zeros(4, 2))
        report = control.step_post_backward(scene, optimizer, info, step=step)
        assert report.get("pruned", 0) == (1 if step == 4 else 0)
    assert len(scene) == 3 and scene.means.data[:, 0].tolist() == [0.0, 1.0, 2.0]
    # growth keeps the record aligned: split children count as seen at the step they are made
    info = _backward_with_grad(scene, optimizer, torch.tensor([[1e-5, 0.0], [1e-5, 0.0], [0.0, 0.0]]))
    info["radii"] = torch.tensor([5, 5, 0])
    assert control.step_post_backward(scene, optimizer, info, step=6) == {"duplicated": 1, "split": 1, "pruned": 0}
    assert control.last_seen.tolist() == [6, 4, 6, 6, 6]  # 0, 2 (last drawn at step 4), copy of 0, children of 1


def test_opacity_reset_and_large_gaussian_pruning():
    scene = _scene_for_control()
    scene.opacity_logits.data[2] = 3.0
    optimizer = make_optimizer(scene, 1.0)
    control = DensityControl(DensityControlConfig(refine_start_iter=0, refine_every=1000, reset_every=10), 1.0)
    info = _backward_with_grad(scene, optimizer, torch.zeros(4, 2))
    control.step_post_backward(scene, optimizer, info, step=10)
    assert float(scene.opacities().max()) <= 0.01 + 1e-6
    assert float(optimizer.state[scene.opacity_logits]["exp_avg"].abs().max()) == 0.0
    scene.opacity_logits.data.fill_(0.0)
    control.cfg.refine_every = 1
    info = _backward_with_grad(scene, optimizer, torch.zeros(4, 2))
    control.step_post_backward(scene, optimizer, info, step=11)  # after a reset: scale 0.5 > 0.1 * scene_scale
    assert len(scene) == 3 and float(scene.scales().max()) < 0.01


def test_masked_gaussians_are_pruned_after_densification_stops():
    """Compact-3DGS drops masked Gaussians every ``mask_prune_every`` steps to the end of training."""
    base = _scene_for_control()
    scene = CompactGaussianScene.from_scene(base, torch.tensor([-1.0, -1, -1, 4, 1, 1]))
    scene.mask_logits.data[1] = -10.0  # masked out
    optimizer = make_optimizer(scene, 1.0)
    control = DensityControl(DensityControlConfig(refine_stop_iter=100, mask_prune_every=50), 1.0)
    info = _backward_with_grad(scene, optimizer, torch.zeros(4, 2))
    assert control.step_post_backward(scene, optimizer, info, step=120) == {} and len(scene) == 4
    assert control.step_post_backward(scene, optimizer, info, step=150) == {"pruned": 1}
    assert len(scene) == 3 and len(optimizer.state[scene.means]["exp_avg"]) == 3


def _write_blender(root, scene: GaussianScene, n_views: int, size: int, split: str, offset: float) -> None:
    angles = torch.linspace(0, 2 * math.pi, n_views + 1)[:-1] + offset
    eye = torch.stack([2.5 * torch.cos(angles), 2.5 * torch.sin(angles), torch.full_like(angles, 1.0)], dim=-1)
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    angle_x = 0.9
    cams = Cameras.from_fov(c2w, angle_x, size, size)
    renderer = SplatRenderer(background=(0.0, 0.0, 0.0))
    frames = []
    (root / split).mkdir(parents=True, exist_ok=True)
    for i in range(n_views):
        with torch.no_grad():
            out = renderer.render_camera(scene, cams, i)
        rgba = torch.cat([out["rgb"] / out["alpha"][..., None].clamp_min(1e-6), out["alpha"][..., None]], -1)
        iio.imwrite(root / split / f"r_{i}.png", (rgba.clamp(0, 1).numpy() * 255).round().astype(np.uint8))
        frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w[i].tolist()})
    (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle_x, "frames": frames}))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_scene")
    g = torch.Generator().manual_seed(1)
    n = 60
    sh = torch.zeros(n, 1, 3)
    sh[:, 0] = (torch.rand(n, 3, generator=g) - 0.5) / 0.28209479177387814
    target = GaussianScene(torch.rand(n, 3, generator=g) - 0.5, torch.full((n, 3), math.log(0.08)),
                           torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.full((n,), 2.0), sh)
    _write_blender(root, target, 10, 32, "train", 0.0)
    _write_blender(root, target, 3, 32, "test", 0.3)
    return root


TINY = {"n_init": 300, "aabb": (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), "sh_interval": 100, "refine_start": 40,
        "refine_every": 20, "densify_until": 0.7}


def _train(data, out, steps: int = 150, minutes: float = 0.0, device: str = "auto", resume: bool = False,
           checkpoint_every_s: float = 60.0, **kw) -> dict:
    """``train_splat`` with the tiny scene's settings (``kw`` override them)."""
    loop = LoopConfig(steps=steps, minutes=minutes, log_every=10, checkpoint_every_s=checkpoint_every_s,
                      progress=False)
    return train_splat(data, out, SplatTrainConfig(**{**TINY, **kw}), loop, device=device, resume=resume)


def test_tiny_training_run_learns_and_exports(tiny_data, tmp_path):
    run = tmp_path / "run"
    metrics = _train(tiny_data, run)
    baseline = _train(tiny_data, tmp_path / "untrained", steps=1)
    assert metrics["psnr"] > baseline["psnr"] + 6.0, (metrics, baseline)
    assert metrics["psnr"] > 20.0
    assert json.loads((run / "metrics.json").read_text())["psnr"] == metrics["psnr"]
    scene = load_splat_run(run)
    assert len(scene) == metrics["n_gaussians"] != 300  # density control changed the set
    assert scene.active_sh_degree == 1
    from_ply = load_splat_ply(run / "scene.ply")
    torch.testing.assert_close(from_ply.means.data, scene.means.data)
    assert cli_main(["export", "splat", str(run), "--out", str(tmp_path / "exported.ply")]) == 0
    assert len(load_splat_ply(tmp_path / "exported.ply")) == len(scene)
    assert cli_main(["export", "splat", str(tmp_path / "nowhere")]) == 2


def test_density_control_starts_at_densify_from_when_refine_start_is_later(tiny_data, tmp_path):
    """--refine-start 1000 is beyond a 120-step run: only --densify-from can start density control."""
    never = _train(tiny_data, tmp_path / "never", steps=120, evaluate=False, refine_start=1000, densify_from=1.0)
    assert never["n_gaussians"] == 300
    started = _train(tiny_data, tmp_path / "started", steps=120, evaluate=False, refine_start=1000,
                     densify_from=0.25)
    assert started["n_gaussians"] != 300
    state = load_checkpoint(tmp_path / "started" / "checkpoint.safetensors")[1]["training"]
    assert state["refine_start_iter"] == 30  # the step at which a quarter of the run had passed
    # auto: early only for runs that start from fewer Gaussians than --n-init (sparse SfM points)
    assert resolve_densify_from(None, 1500, 20000) == SPARSE_DENSIFY_FROM == 1 / 60
    assert resolve_densify_from(None, 20000, 20000) == 1.0 and resolve_densify_from(0.3, 10, 20000) == 0.3
    auto = _train(tiny_data, tmp_path / "auto", steps=5, evaluate=False, n_init=300)
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["options"]["densify_from"] == 1.0, auto


def test_colour_field_learning_rate_warms_up_then_decays_at_the_given_fractions():
    assert color_field_lr_factor(1, 0.0) == pytest.approx(0.0199)
    assert color_field_lr_factor(50, 0.0) == pytest.approx(0.505)
    assert color_field_lr_factor(100, 0.16) == 1.0
    assert color_field_lr_factor(2000, 0.8) == 1.0  # default: one step, at 5/6 of the run
    assert color_field_lr_factor(5000, 0.9) == pytest.approx(0.33)
    real_scene = (1 / 6, 1 / 2, 5 / 6)
    assert color_field_lr_factor(400, 0.2, real_scene) == pytest.approx(0.33)
    assert color_field_lr_factor(2000, 0.5, real_scene) == pytest.approx(0.33**2)
    assert color_field_lr_factor(5000, 0.9, real_scene) == pytest.approx(0.33**3)
    assert color_field_lr_factor(5000, 0.9, ()) == 1.0


def test_tiny_compact_run_writes_compressed_file(tiny_data, tmp_path, monkeypatch):
    import omnifield.apps.splat.train as train_module

    factors = []
    monkeypatch.setattr(train_module, "color_field_lr_factor",
                        lambda *a: factors.append(color_field_lr_factor(*a)) or factors[-1])
    metrics = _train(tiny_data, tmp_path / "compact", compact=True, steps=80, rvq_from=0.6,
                     color_lr_decay_at=(0.25, 0.5))
    assert len(factors) == 80 and factors[-1] == pytest.approx(0.33**2 * 0.802)  # the loop follows the schedule
    assert (tmp_path / "compact" / "scene.ofz").stat().st_size == pytest.approx(metrics["compressed_mb"] * 1e6)
    assert metrics["psnr"] > 18.0
    scene = load_splat_run(tmp_path / "compact")
    assert scene.use_rvq
    # a run written before the colour output became a degree-0 SH coefficient is refused, not misread
    checkpoint = tmp_path / "compact" / "checkpoint.safetensors"
    tensors, meta = load_checkpoint(checkpoint)
    del meta["color_output"]
    save_checkpoint(checkpoint, tensors, meta)
    with pytest.raises(OmnifieldError, match="older omnifield.*sigmoid.*train the scene again"):
        load_splat_run(tmp_path / "compact")


def test_first_step_does_not_count_against_the_time_budget(tiny_data, tmp_path, monkeypatch):
    """The first step compiles native kernels on a fresh install; a 3-second budget must still train
    after a first step that takes 4 seconds."""
    import time

    original, calls = SplatRenderer.render_camera, []

    def slow_first(self, *args, **kwargs):
        if not calls:
            time.sleep(4.0)
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SplatRenderer, "render_camera", slow_first)
    metrics = _train(tiny_data, tmp_path / "run", steps=0, minutes=0.05, evaluate=False)
    assert metrics["steps"] > 5 and metrics["train_seconds"] < 3.5


def test_s3im_in_splat_training(tiny_data, tmp_path):
    image = torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    assert float(s3im_on_pixels(image, image, g)) == pytest.approx(0.0, abs=1e-6)
    assert float(s3im_on_pixels(image, image.flip(0), g)) > 0.5
    metrics = _train(tiny_data, tmp_path / "s3im", s3im_weight=1.0)
    assert metrics["psnr"] > 20.0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compact", [False, True])
def test_tiny_training_run_on_cuda(tiny_data, tmp_path, compact):
    """On CUDA (gsplat when installed, else the torch rasterizer), a run learns and re-opens on the CPU."""
    steps = {"steps": 80, "rvq_from": 0.6} if compact else {}
    metrics = _train(tiny_data, tmp_path / "run", device="cuda", compact=compact, **steps)
    assert metrics["psnr"] > (18.0 if compact else 20.0)
    scene = load_splat_run(tmp_path / "run")
    assert scene.means.device.type == "cpu" and len(scene) == len(load_splat_ply(tmp_path / "run" / "scene.ply"))


def test_bad_options_raise_clear_errors(tiny_data, tmp_path):
    with pytest.raises(OmnifieldError, match="expected auto, cpu, cuda"):
        _train(tiny_data, tmp_path / "x", device="tpu")
    with pytest.raises(OmnifieldError, match="--init points needs --init-points"):
        _train(tiny_data, tmp_path / "x", init="points")
    with pytest.raises(OmnifieldError, match="--densify-until"):
        _train(tiny_data, tmp_path / "x", densify_until=2.0)
    with pytest.raises(OmnifieldError, match="--color-lr-decay-at must be fractions"):
        _train(tiny_data, tmp_path / "x", compact=True, color_lr_decay_at=(0.5, float("nan")))
    with pytest.raises(OmnifieldError, match="s3im-weight must be >= 0"):
        _train(tiny_data, tmp_path / "x", s3im_weight=-1.0)
    with pytest.raises(OmnifieldError, match="--depth-weight must be a finite number"):
        _train(tiny_data, tmp_path / "x", depth_weight=float("nan"))
    with pytest.raises(OmnifieldError, match="--max-scale-ratio must be 0"):
        _train(tiny_data, tmp_path / "x", max_scale_ratio=0.5)


def test_point_cloud_readers(tmp_path):
    txt = tmp_path / "points3D.txt"
    txt.write_text("# comment\n1 0.5 1.0 -2.0 255 0 51 0.1 1 2\n2 1 2 3 0 0 0 0.2\n")
    pts, colors = read_point_cloud(txt)
    torch.testing.assert_close(pts, torch.tensor([[0.5, 1.0, -2.0], [1.0, 2.0, 3.0]]))
    torch.testing.assert_close(colors[0], torch.tensor([1.0, 0.0, 0.2]))
    from plyfile import PlyData, PlyElement

    v = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    v["x"], v["red"] = [1, 2, 3], 255
    PlyData([PlyElement.describe(v, "vertex")]).write(str(tmp_path / "cloud.ply"))
    pts, colors = read_point_cloud(tmp_path / "cloud.ply")
    assert pts[:, 0].tolist() == [1.0, 2.0, 3.0] and colors[:, 0].tolist() == [1.0] * 3
    with pytest.raises(OmnifieldError, match="nothing.ply: point cloud not found"):
        read_point_cloud(tmp_path / "nothing.ply")


class _Ball(torch.nn.Module):
    """Analytic field: density 50 inside a ball of radius 0.3 at (0.5, 0, 0), red; zero elsewhere."""

    aabb = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])

    def density(self, x):
        return 50.0 * ((x - torch.tensor([0.5, 0.0, 0.0])).norm(dim=-1) < 0.3).float()

    def forward(self, x, d):
        return torch.tensor([1.0, 0.0, 0.0]).expand(len(x), 3), self.density(x)


def test_points_from_radiance_field_density():
    pts, colors = points_from_density(_Ball(), 500, torch.Generator().manual_seed(0), n_candidates=1 << 17)
    assert pts.shape == (500, 3)
    assert float((pts - torch.tensor([0.5, 0.0, 0.0])).norm(dim=-1).max()) < 0.3
    assert torch.equal(colors, torch.tensor([1.0, 0.0, 0.0]).expand(500, 3))
