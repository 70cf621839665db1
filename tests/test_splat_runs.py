"""Splat runs wherever a run is accepted: ``eval``, ``render``, ``export mesh|points|video``, ``view``, ``nav
export``, ``train --method splat`` with a live viewer hook, and Compact-3DGS ``.ofz`` files (:func:`open_run`)."""

from __future__ import annotations

import contextlib
import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import trimesh
from plyfile import PlyData

from omnifield.apps.recon.open_run import SplatRun, open_run
from omnifield.apps.splat import SplatTrainConfig, train_splat
from omnifield.apps.viewer.cli import run_render
from omnifield.cli import main
from omnifield.data.images import composite_on
from omnifield.data.scene import load_scene
from omnifield.engine import LoopConfig
from omnifield.fields.gaussians import SH_C0, GaussianScene
from omnifield.io.splat_run import save_splat_run
from omnifield.metrics import psnr
from omnifield.renderers.cameras import Cameras, look_at
from omnifield.renderers.splat import SplatRenderer

SCALE, OPACITY, N_BALL = 0.3, 0.9, 4  # the ball: N_BALL isotropic Gaussians at the origin
RED = torch.tensor([0.9, 0.1, 0.1])
REACH = SCALE * math.sqrt(2 * math.log(255 * OPACITY))  # radius where each Gaussian's alpha falls to 1/255


def _ball() -> GaussianScene:
    """``N_BALL`` equal isotropic red Gaussians at the origin (density ``N_BALL peak exp(-r^2 / 2 s^2)``)."""
    sh = ((RED - 0.5) / SH_C0).expand(N_BALL, 1, 3)
    logit = math.log(OPACITY / (1 - OPACITY))
    return GaussianScene(torch.zeros(N_BALL, 3), torch.full((N_BALL, 3), math.log(SCALE)),
                         torch.tensor([[1.0, 0, 0, 0]]).repeat(N_BALL, 1), torch.full((N_BALL,), logit), sh)


def _ball_density(r: np.ndarray) -> np.ndarray:
    """The analytic density of :func:`_ball` at radius ``r`` (inside the Gaussians' cut-off)."""
    peak = -math.log(1 - OPACITY) / (math.sqrt(2 * math.pi) * SCALE)
    return N_BALL * peak * np.exp(-0.5 * (np.asarray(r) / SCALE) ** 2)


def _write_views(root, scene: GaussianScene, split: str, n: int, size: int = 32) -> None:
    """Blender-layout views of ``scene`` (RGBA, straight alpha) on a circle around it."""
    angles = torch.linspace(0, 2 * math.pi, n + 1)[:-1] + (0.3 if split == "test" else 0.0)
    eye = torch.stack([2.5 * torch.cos(angles), 2.5 * torch.sin(angles), torch.full_like(angles, 1.0)], dim=-1)
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    cams = Cameras.from_fov(c2w, 0.9, size, size)
    (root / split).mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(n):
        with torch.no_grad():
            out = SplatRenderer(background=(0.0, 0.0, 0.0)).render_camera(scene, cams, i)
        rgba = torch.cat([out["rgb"] / out["alpha"][..., None].clamp_min(1e-6), out["alpha"][..., None]], -1)
        iio.imwrite(root / split / f"r_{i}.png", (rgba.clamp(0, 1).numpy() * 255).round().astype(np.uint8))
        frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w[i].tolist()})
    (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.9, "frames": frames}))


@pytest.fixture(scope="module")
def ball_run(tmp_path_factory):
    """A splat run of the ball (written with ``save_splat_run``) and the Blender scene of its views."""
    root = tmp_path_factory.mktemp("ball")
    data, run = root / "data", root / "run"
    for split, n in (("train", 4), ("test", 2)):
        _write_views(data, _ball(), split, n)
    save_splat_run(run, _ball(), 0, {"method": "splat", "data": str(data), "options": {"downscale": 1}})
    return run


def test_open_run_gives_the_gaussians_and_the_settings(ball_run):
    run = open_run(ball_run)
    assert isinstance(run, SplatRun) and run.kind == "splat" and run.occupancy is None
    assert len(run.field) == N_BALL and not run.field.training
    assert run.data_dir.endswith("data") and run.downscale == 1
    x = torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.0, 0.0]])
    np.testing.assert_allclose(run.field.density(x).numpy(), _ball_density([0.0, 0.2]), rtol=1e-4)


def test_eval_of_a_splat_run_scores_its_own_views_and_writes_side_by_side_pngs(ball_run):
    assert main(["eval", str(ball_run)]) == 0
    metrics = json.loads((ball_run / "metrics.json").read_text())
    data = load_scene(ball_run.parent / "data", "test", 1)
    renderer = SplatRenderer(background=(1.0, 1.0, 1.0))  # the plain reference: render on white, compare
    with torch.no_grad():
        expected = [psnr(renderer.render_camera(_ball(), data.cameras, i)["rgb"].clamp(0, 1),
                         composite_on(data.images[i], torch.ones(3))) for i in range(2)]
    assert metrics["n_views"] == 2 and math.isfinite(metrics["psnr"]) and metrics["psnr"] > 30
    assert metrics["psnr"] == pytest.approx(float(np.mean(expected)), abs=1e-3)
    side_by_side = iio.imread(ball_run / "renders" / "test" / "r_0.png")
    assert side_by_side.shape == (32, 64, 3)


def test_render_writes_frames_and_an_orbit_video(ball_run, tmp_path):
    assert main(["render", str(ball_run), "--orbit", "--frames", "3"]) == 0
    assert (ball_run / "renders" / "test" / "r_1.png").is_file()
    frames = iio.imread(next(ball_run.glob("orbit.*")), index=None)
    assert len(frames) == 3
    middle = frames[0][frames[0].shape[0] // 2, frames[0].shape[1] // 2].astype(float) / 255
    assert middle[0] > 0.6 and middle[1] < 0.4  # the red ball in the middle of the orbit's view
    assert main(["export", "video", str(ball_run), "--out", str(tmp_path / "v.mp4"), "--frames", "2", "--quiet"]) == 0
    assert len(iio.imread(next(tmp_path.glob("v.*")), index=None)) == 2


def test_export_points_writes_each_gaussian_with_its_colour(ball_run, tmp_path):
    out = tmp_path / "points.ply"
    assert main(["export", "points", str(ball_run), "--out", str(out)]) == 0
    vertex = PlyData.read(str(out))["vertex"]
    assert len(vertex) == N_BALL
    np.testing.assert_allclose(np.stack([vertex["x"], vertex["y"], vertex["z"]], -1), 0.0, atol=1e-6)
    colours = np.stack([vertex["red"], vertex["green"], vertex["blue"]], -1).astype(float)
    np.testing.assert_allclose(colours, np.broadcast_to(RED.numpy() * 255, colours.shape), atol=1.0)


def test_export_mesh_of_the_ball_is_its_analytic_iso_surface(ball_run, tmp_path):
    radius = 0.5
    threshold = float(_ball_density(radius))
    out = tmp_path / "mesh.ply"
    assert main(["export", "mesh", str(ball_run), "--out", str(out), "--resolution", "48", "--threshold",
                 str(threshold), "--quiet"]) == 0
    mesh = trimesh.load(out)
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(r.mean() - radius) < 0.01 and r.std() < 0.01
    # the chosen threshold (Otsu split of density samples over the Gaussians' box): a lone smooth blob has no
    # surface inside it, so the split falls between empty space and the Gaussians' cut-off, their visible extent
    out = tmp_path / "auto.ply"
    assert main(["export", "mesh", str(ball_run), "--out", str(out), "--resolution", "32", "--quiet"]) == 0
    r = np.linalg.norm(trimesh.load(out).vertices, axis=1)
    assert abs(r.mean() - REACH) < 0.03 and r.std() < 0.03


def test_export_mesh_refuses_a_threshold_keeping_nothing(ball_run, tmp_path):
    assert main(["export", "mesh", str(ball_run), "--out", str(tmp_path / "m.ply"), "--threshold", "1e9"]) == 2


def test_view_renders_the_gaussians(ball_run):
    cams = Cameras.from_fov(look_at(torch.tensor([[0.0, -3.0, 0.0]]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])),
                            0.9, 24, 24)
    image = run_render(open_run(ball_run))(cams)
    assert image.shape == (24, 24, 3)
    torch.testing.assert_close(image[12, 12], RED, atol=0.05, rtol=0)  # the opaque ball's colour
    torch.testing.assert_close(image[0, 0], torch.ones(3))  # white around it


def test_nav_export_of_the_ball_occupies_a_ball(ball_run, tmp_path):
    out = tmp_path / "nav"
    assert main(["nav", "export", str(ball_run), "--out", str(out), "--voxel", "0.1", "--quiet"]) == 0
    with np.load(out / "grid.npz") as grid:
        occupied, bounds, voxel = grid["occupancy"].astype(bool), grid["bounds"], grid["voxel_size"]
    assert 0 < occupied.sum() < occupied.size
    centres = bounds[:3] + (np.argwhere(occupied) + 0.5) * voxel
    assert np.linalg.norm(centres, axis=1).max() < REACH + 0.1 * math.sqrt(3) / 2  # cells touching the reach
    centre = np.floor((0 - bounds[:3]) / voxel).astype(int)
    assert occupied[tuple(centre)]


@pytest.fixture(scope="module")
def compact_run(ball_run, tmp_path_factory):
    """A tiny Compact-3DGS run (3 steps, RVQ on from the start) with its ``scene.ofz``; the viewer hook watched it."""
    out = tmp_path_factory.mktemp("compact") / "run"
    seen = []

    @contextlib.contextmanager
    def watch(scene, engine):
        def hook():
            seen.append(run_render_of(scene))

        engine.between_steps.append(hook)
        yield
        engine.between_steps.remove(hook)

    def run_render_of(scene):
        from omnifield.apps.viewer.server import splat_render

        cams = Cameras.from_fov(look_at(torch.tensor([[0.0, -3.0, 0.0]]), torch.zeros(3),
                                        torch.tensor([0.0, 0.0, 1.0])), 0.9, 16, 16)
        return splat_render(scene)(cams)

    cfg = SplatTrainConfig(n_init=200, aabb=(-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), compact=True, rvq_from=0.0,
                           evaluate=False)
    train_splat(ball_run.parent / "data", out, cfg, LoopConfig(steps=3, progress=False), watch=watch)
    return out, seen


def test_train_splat_runs_its_watch_between_steps(compact_run):
    _, seen = compact_run
    assert len(seen) >= 2 and all(image.shape == (16, 16, 3) and torch.isfinite(image).all() for image in seen)


def test_the_ofz_of_a_compact_run_renders_like_its_checkpoint(compact_run, tmp_path):
    out, _ = compact_run
    from_checkpoint, from_file = open_run(out), open_run(out / "scene.ofz")
    assert from_checkpoint.method == from_file.method == "splat-compact"
    assert from_file.data_dir == from_checkpoint.data_dir  # settings from the config.json beside it
    data = load_scene(from_file.data_dir, "test", 1)
    for i in range(len(data.images)):
        a = from_checkpoint.render(data.cameras, i, torch.ones(3))["rgb"]
        b = from_file.render(data.cameras, i, torch.ones(3))["rgb"]
        assert psnr(b.clamp(0, 1), a.clamp(0, 1)) > 40
    alone = tmp_path / "alone"  # a folder holding only the .ofz
    alone.mkdir()
    (alone / "scene.ofz").write_bytes((out / "scene.ofz").read_bytes())
    assert main(["eval", str(alone), "--data", from_file.data_dir]) == 0
    assert math.isfinite(json.loads((alone / "metrics.json").read_text())["psnr"])
    assert main(["eval", str(alone)]) == 2  # no settings beside it: the scene folder must be given
