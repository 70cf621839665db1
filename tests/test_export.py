"""Exports: marching-cubes meshes and point clouds of analytic fields, and the CLI on a run fitted to a ball."""

from __future__ import annotations

import json
import math

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
    density = lambda x: ball_density(x) + ball_density(x, (0.8, 0.8, 0.8), 0.06)  # noqa: E731
    colour = lambda x, d: (x + 1) / 2  # noqa: E731
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
