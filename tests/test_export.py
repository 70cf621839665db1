"""Exports: marching-cubes meshes and point clouds of analytic fields, and the CLI on a run fitted to a ball."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import trimesh
from plyfile import PlyData

from omnifield.apps.recon.config import TrainConfig
from omnifield.apps.recon.run import Run
from omnifield.cli import main
from omnifield.errors import OmnifieldError
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.radiance import RadianceFieldConfig
from omnifield.io.mesh import extract_mesh, save_mesh
from omnifield.io.points import sample_dense_points, save_points_ply
from omnifield.renderers.cameras import look_at
from omnifield.renderers.volume import VolumeRendererConfig

AABB = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])


def ball_density(x, centre=(0.0, 0.0, 0.0), radius=0.5):
    """Smooth ball: 100 inside, 0 outside, 50 on the sphere of ``radius``."""
    r = (x - torch.tensor(centre)).norm(dim=-1)
    return 100 * torch.sigmoid((radius - r) * 60)


def test_mesh_of_a_ball_has_the_right_radius_area_colours_and_no_floater(tmp_path):
    density = lambda x: ball_density(x) + ball_density(x, (0.8, 0.8, 0.8), 0.06)
    colour = lambda x, d: (x + 1) / 2
    mesh = extract_mesh(density, AABB, resolution=64, threshold=50.0, color=colour)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(radii - 0.5).max() < 0.01  # the small ball was dropped as a floater
    assert mesh.is_watertight and mesh.volume > 0  # outward-facing
    assert mesh.area == pytest.approx(4 * math.pi * 0.25, rel=0.02)
    expected = np.round((mesh.vertices + 1) / 2 * 255)
    assert np.abs(mesh.visual.vertex_colors[:, :3] - expected).max() <= 1
    for suffix in (".ply", ".obj", ".glb"):
        back = trimesh.load(save_mesh(mesh, tmp_path / f"ball{suffix}"), force="mesh")
        assert len(back.faces) == len(mesh.faces)
    with pytest.raises(OmnifieldError, match="threshold 500.0 is outside"):
        extract_mesh(density, AABB, resolution=16, threshold=500.0)
    with pytest.raises(OmnifieldError, match="unsupported mesh format"):
        save_mesh(mesh, tmp_path / "ball.stl")


def test_points_lie_in_the_dense_region_and_round_trip_through_ply(tmp_path):
    xyz, rgb = sample_dense_points(ball_density, AABB, 3000, threshold=50.0, color=lambda x, d: (x + 1) / 2,
                                   resolution=32)
    assert len(xyz) == 3000 and (xyz.norm(dim=-1) < 0.5).all()
    assert xyz.norm(dim=-1).max() > 0.45  # fills the ball, not just the centre voxels
    torch.testing.assert_close(rgb, (xyz + 1) / 2)
    save_points_ply(tmp_path / "p.ply", xyz.numpy(), rgb.numpy())
    vertex = PlyData.read(str(tmp_path / "p.ply"))["vertex"]
    np.testing.assert_allclose(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1), xyz.numpy(), atol=1e-6)
    assert vertex["red"].dtype == np.uint8


@pytest.fixture(scope="module")
def ball_run(tmp_path_factory):
    """A run whose field was regressed onto a ball of radius 0.6 (box units); capture scale 0.25 -> world x2."""
    root = tmp_path_factory.mktemp("export")
    data = root / "capture"
    (data / "images").mkdir(parents=True)
    angles = torch.arange(8) * 2 * math.pi / 8
    eye = torch.stack([5 * torch.cos(angles), 5 * torch.sin(angles), torch.full((8,), 1.0)], -1)
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    frames = []
    for i in range(8):
        iio.imwrite(data / "images" / f"{i}.png", np.zeros((8, 8, 3), np.uint8))
        frames.append({"file_path": f"images/{i}.png", "transform_matrix": c2w[i].tolist()})
    (data / "transforms.json").write_text(json.dumps({"fl_x": 8.0, "w": 8, "h": 8, "scale": 0.25,
                                                      "offset": [0.5, 0.5, 0.5], "frames": frames}))
    torch.manual_seed(0)
    enc = HashGridConfig(n_levels=2, n_features_per_level=2, base_resolution=8, max_resolution=24)
    cfg = RadianceFieldConfig(encoding=enc, density_decoder=MLPConfig(width=16, n_hidden_layers=1),
                              color_decoder=MLPConfig(width=16, n_hidden_layers=1), sh_degree=1,
                              aabb=tuple(AABB.tolist()))
    run = Run.create(root / "run", "hashgrid", cfg, VolumeRendererConfig(sampler="uniform", n_samples=16),
                     TrainConfig(steps=1), str(data))
    opt = torch.optim.Adam(run.field.parameters(), lr=5e-2)
    for _ in range(60):
        x = torch.rand(2048, 3) * 2 - 1
        loss = (run.field.density(x).reshape(-1) / 100 - ball_density(x, radius=0.6) / 100).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    run.save(1, {}, {})
    return root / "run"


def test_export_mesh_cli_comes_back_in_world_units(ball_run, tmp_path, capsys):
    out = tmp_path / "m.glb"
    assert main(["export", "mesh", str(ball_run), "--out", str(out), "--resolution", "48", "--threshold", "50"]) == 0
    mesh = trimesh.load(out, force="mesh")
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.median(radii) == pytest.approx(1.2, abs=0.08)  # box radius 0.6 / scale 0.5
    assert "faces" in capsys.readouterr().out


def test_export_points_and_video_cli(ball_run, tmp_path):
    assert main(["export", "points", str(ball_run), "--out", str(tmp_path / "p.ply"), "--n-points", "500",
                 "--resolution", "24", "--threshold", "50"]) == 0
    vertex = PlyData.read(str(tmp_path / "p.ply"))["vertex"]
    r = np.linalg.norm(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1), axis=1)
    assert len(r) == 500 and np.percentile(r, 95) < 1.35
    assert main(["export", "video", str(ball_run), "--out", str(tmp_path / "v.mp4"), "--frames", "3",
                 "--quiet"]) == 0
    written = next(tmp_path.glob("v.*"))
    assert len(iio.imread(written, index=None)) == 3
    path = {"fl_x": 6.0, "w": 10, "h": 6, "frames": [{"transform_matrix": look_at(
        torch.tensor([[0.0, -6.0, 0.0]]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))[0].tolist()}]}
    (tmp_path / "path.json").write_text(json.dumps(path))
    assert main(["export", "video", str(ball_run), "--path", str(tmp_path / "path.json"),
                 "--out", str(tmp_path / "one.mp4"), "--quiet"]) == 0
    frames = iio.imread(next(tmp_path.glob("one.*")), index=None)
    assert frames.shape[1:3] == (6, 10)


def test_export_errors_are_one_line(ball_run, tmp_path, capsys):
    assert main(["export", "mesh", str(tmp_path / "nope")]) == 2
    assert main(["export", "video", str(ball_run), "--path", "missing.json"]) == 2
    assert main(["export", "mesh", str(ball_run), "--out", str(tmp_path / "m.stl"), "--resolution", "16",
                 "--threshold", "50"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("omnifield: error:") for line in err)


def test_export_mesh_chooses_its_threshold_and_shows_progress(ball_run, tmp_path, capsys):
    out = tmp_path / "m.ply"
    assert main(["export", "mesh", str(ball_run), "--out", str(out), "--resolution", "48"]) == 0
    captured = capsys.readouterr()
    line = next(s for s in captured.out.splitlines() if s.startswith("density threshold"))
    threshold = float(line.split()[2])
    # the fitted ball is 100 * sigmoid(60 (0.6 - r)) in box units: the iso-surface of ``threshold``
    expected = (0.6 - np.log(threshold / (100 - threshold)) / 60) / 0.5
    radii = np.linalg.norm(trimesh.load(out, force="mesh").vertices, axis=1)
    assert "Otsu" in line and "keeps" in line
    assert np.median(radii) == pytest.approx(expected, abs=0.08)
    assert "density grid" in captured.err and "/111k" in captured.err  # the progress bar over 48^3 points
    assert main(["export", "mesh", str(ball_run), "--out", str(out), "--resolution", "16", "--quiet"]) == 0
    assert "density grid" not in capsys.readouterr().err


def _nerfstudio_path(data_dir, names, height=8, width=8, focal=8.0, fps=12):
    """nerfstudio ``camera_path.json`` through the poses of the transforms.json frames named ``names``."""
    frames = {Path(f["file_path"]).stem: f for f in json.loads((Path(data_dir) / "transforms.json").read_text())["frames"]}
    fov = math.degrees(2 * math.atan(0.5 * height / focal))  # vertical, in degrees
    return {"camera_type": "perspective", "render_height": height, "render_width": width, "fps": fps,
            "seconds": len(names) / fps,
            "camera_path": [{"camera_to_world": np.ravel(frames[Path(n).stem]["transform_matrix"]).tolist(),
                             "fov": fov, "aspect": width / height} for n in names]}


def test_nerfstudio_camera_path_renders_what_the_dataset_cameras_render(ball_run, tmp_path, capsys):
    from omnifield.apps.recon.evaluate import render_cameras
    from omnifield.data.camera_path import read_camera_path
    from omnifield.data.scene import load_scene, scene_normalization
    from omnifield.metrics import psnr

    run, _, _ = Run.open(ball_run)
    views = load_scene(run.data_dir, "test", 1)
    (tmp_path / "camera_path.json").write_text(json.dumps(_nerfstudio_path(run.data_dir, views.names)))
    path = read_camera_path(tmp_path / "camera_path.json", scene_normalization(run.data_dir))
    assert path.fps == 12 and len(path.cameras) == len(views.names)
    torch.testing.assert_close(path.cameras.c2w, views.cameras.c2w, atol=1e-5, rtol=0)  # world -> box
    torch.testing.assert_close(path.cameras.fy, views.cameras.fy)
    torch.testing.assert_close(path.cameras.cx, views.cameras.cx)
    by_path = render_cameras(run, path.cameras, progress=False)
    by_data = render_cameras(run, views.cameras, progress=False)
    for a, b in zip(by_path, by_data):
        assert psnr(torch.from_numpy(a) / 255.0, torch.from_numpy(b) / 255.0) > 60  # the same view

    assert main(["export", "video", str(ball_run), "--path", str(tmp_path / "camera_path.json"),
                 "--out", str(tmp_path / "ns.mp4"), "--quiet"]) == 0
    assert "at 12 fps" in capsys.readouterr().out
    assert iio.imread(next(tmp_path.glob("ns.*")), index=None).shape[:3] == (len(views.names), 8, 8)
    assert main(["render", str(ball_run), "--camera-path", str(tmp_path / "camera_path.json")]) == 0
    assert len(iio.imread(next(ball_run.glob("camera_path.*")), index=None)) == len(views.names)
    for bad, message in (({"camera_path": []}, "non-empty list"),
                         ({"camera_path": [{"camera_to_world": [1] * 15, "fov": 50}], "render_height": 8,
                           "render_width": 8}, "4x4"),
                         ({"camera_path": [{"camera_to_world": np.eye(4).ravel().tolist(), "fov": 50}]},
                          "render_height"),
                         ({"camera_type": "equirectangular", "camera_path": [{}]}, "perspective only")):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        assert main(["export", "video", str(ball_run), "--path", str(tmp_path / "bad.json"), "--quiet"]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("frames, fps", [("0", "24"), ("10", "0")])
def test_render_refuses_zero_frames_or_fps_without_orbit(ball_run, capsys, frames, fps):
    assert main(["render", str(ball_run), "--frames", frames, "--fps", fps]) == 2
    assert "must be" in capsys.readouterr().err


def test_poisson_mesh_of_the_ball(ball_run, tmp_path, capsys):
    pytest.importorskip("open3d")
    out = tmp_path / "poisson.ply"
    assert main(["export", "mesh", str(ball_run), "--method", "poisson", "--out", str(out), "--resolution", "32",
                 "--n-points", "20000", "--depth", "6", "--threshold", "50", "--quiet"]) == 0
    mesh = trimesh.load(out, force="mesh")
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.median(radii) == pytest.approx(1.2, abs=0.08)  # box radius 0.6 / scale 0.5, as marching cubes
    assert mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)


def test_poisson_without_open3d_names_the_extra(ball_run, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "open3d", None)  # import open3d raises ImportError
    assert main(["export", "mesh", str(ball_run), "--method", "poisson"]) == 2
    assert "pip install 'omnifield[mesh]'" in capsys.readouterr().err


def test_nerfstudio_path_without_width_takes_the_aspect(tmp_path):
    from omnifield.data.camera_path import read_camera_path
    from omnifield.data.scene import Normalization

    path = {"render_height": 30, "camera_path": [{"camera_to_world": np.eye(4).ravel().tolist(), "fov": 90.0,
                                                   "aspect": 1.5}]}
    (tmp_path / "p.json").write_text(json.dumps(path))
    cameras = read_camera_path(tmp_path / "p.json", Normalization(2.0, (1.0, 0.0, 0.0))).cameras
    assert (cameras.width, cameras.height) == (45, 30)
    assert float(cameras.fy[0]) == pytest.approx(15.0)  # half the height over tan(45 degrees)
    torch.testing.assert_close(cameras.c2w[0, :3, 3], torch.tensor([1.0, 0.0, 0.0]))  # 2 * 0 + offset


def test_every_export_option_has_help():
    import argparse

    from omnifield.cli import build_parser

    def child(parser, name):
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]

    for words in (["export", "mesh"], ["export", "points"], ["export", "video"], ["nav", "export"], ["render"]):
        parser = build_parser()
        for word in words:
            parser = child(parser, word)
        assert [a.dest for a in parser._actions if not a.help] == [], words
