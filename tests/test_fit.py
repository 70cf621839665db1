"""Image and SDF fitting programs: loaders, targets, metrics, short fits and the ``omnifield fit`` CLI."""

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import trimesh
from torch import nn

from omnifield.apps.fit.image import FitImageConfig, fit_image, load_image, psnr
from omnifield.apps.fit.presets import BACKENDS, count_parameters, field_for_budget
from omnifield.apps.fit.sdf import FitSDFConfig, extract_mesh, fit_sdf, inside_mesh, mesh_metrics, signed_distance
from omnifield.cli import main
from omnifield.engine import LoopConfig
from omnifield.errors import OmnifieldError
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.image_field import pixel_coordinates
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.sdf_field import SDFFieldConfig


def QUIET(steps: int) -> LoopConfig:
    """A budget of ``steps`` without a progress bar."""
    return LoopConfig(steps=steps, progress=False)


REPO_DATA = __import__("pathlib").Path(__file__).resolve().parents[1] / "data"


def test_load_image_resizes_and_rejects_bad_files(tmp_path):
    img = load_image(REPO_DATA / "astronaut" / "astronaut.png", 64)
    assert img.shape == (64, 64, 3) and img.dtype == torch.float32 and 0 <= img.min() and img.max() <= 1
    grey = tmp_path / "grey.png"
    iio.imwrite(grey, np.full((10, 20), 128, np.uint8))
    g = load_image(grey)
    assert g.shape == (10, 20, 3) and torch.allclose(g, torch.full_like(g, 128 / 255))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(OmnifieldError, match="bad.png"):
        load_image(tmp_path / "bad.png")


def test_pixel_coordinates_are_pixel_centres():
    uv = pixel_coordinates(2, 4)
    assert uv.shape == (2, 4, 2)
    torch.testing.assert_close(uv[1, 3], torch.tensor([7 / 8, 3 / 4]))


@pytest.mark.parametrize("task", ["image", "sdf"])
def test_presets_meet_the_parameter_budget(task):
    budget = 60_000 if task == "image" else 100_000
    for backend in BACKENDS:
        n = count_parameters(field_for_budget(task, backend, budget).build())
        assert 0.3 * budget < n < 2.5 * budget, (backend, n)
    with pytest.raises(OmnifieldError, match="unknown backend"):
        field_for_budget(task, "nope", budget)


@pytest.mark.parametrize("backend", ["hashgrid", "neurbf", "hashgrid_cam", "triplane"])
def test_fit_image_beats_the_mean_colour(backend):
    v, u = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 24), indexing="ij")
    image = torch.stack([u, v, 0.5 + 0.4 * torch.sin(6 * u) * torch.cos(4 * v)], dim=-1)
    baseline = psnr(image.mean((0, 1)).expand_as(image), image)
    result = fit_image(image, field_for_budget("image", backend, 20_000), FitImageConfig(batch_pixels=576, loop=QUIET(60)))
    assert result["steps"] == 60 and result["prediction"].shape == image.shape
    assert result["psnr"] > baseline + 5.0, (result["psnr"], baseline)


@pytest.fixture(scope="module")
def sphere():
    return trimesh.creation.icosphere(subdivisions=3, radius=0.5)


def test_signed_distance_of_a_sphere_uses_winding_numbers_even_with_holes(sphere):
    pts = np.random.default_rng(0).uniform(-0.8, 0.8, (500, 3))
    exact = np.linalg.norm(pts, axis=1) - 0.5
    np.testing.assert_allclose(signed_distance(sphere, pts), exact, atol=0.01)
    holed = trimesh.Trimesh(sphere.vertices, sphere.faces[10:])  # open mesh: normals alone cannot tell inside
    far = np.abs(exact) > 0.1
    assert (inside_mesh(holed, pts[far]) == (exact[far] < 0)).all()


def test_mesh_metrics_against_analytic_answers(sphere):
    same = mesh_metrics(sphere, sphere, n_points=20000)
    assert same["chamfer"] < 0.01 and same["normal_consistency"] > 0.97 and same["iou"] > 0.99
    bigger = trimesh.creation.icosphere(subdivisions=3, radius=0.6)
    scores = mesh_metrics(sphere, bigger, n_points=20000)
    assert abs(scores["chamfer"] - 0.1) < 0.01
    assert abs(scores["iou"] - (0.5 / 0.6) ** 3) < 0.02
    assert scores["normal_consistency"] > 0.97


class _AnalyticSphere(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("aabb", torch.tensor([-1.0, -1, -1, 1, 1, 1]))

    def forward(self, x):
        return x.norm(dim=-1) - 0.5


def test_extract_mesh_recovers_an_analytic_sphere_with_outward_faces():
    mesh = extract_mesh(_AnalyticSphere(), 48)
    assert abs(mesh.volume - 4 / 3 * math.pi * 0.125) < 0.01  # positive volume: outward faces
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - 0.5).max() < 0.01


def test_fit_sdf_learns_a_sphere_and_scores_it(sphere):
    cfg = FitSDFConfig(loop=QUIET(100), n_samples=8000, batch_points=1024, mesh_resolution=32)
    tiny = SDFFieldConfig(encoding=HashGridConfig(n_levels=4, log2_hashmap_size=10, base_resolution=4, max_resolution=32),
                          decoder=MLPConfig(width=32, n_hidden_layers=1))
    result = fit_sdf(sphere, tiny, cfg)
    pts = torch.tensor(np.random.default_rng(1).uniform(-0.55, 0.55, (400, 3)), dtype=torch.float32)
    with torch.no_grad():
        err = (result["field"](pts) - (pts.norm(dim=-1) - 0.5)).abs().mean()
    assert err < 0.05
    scores = mesh_metrics(extract_mesh(result["field"], 32), sphere, n_points=5000)
    assert scores["iou"] > 0.8 and scores["chamfer"] < 0.05


def test_cli_fit_image_and_sdf_write_outputs(tmp_path, sphere, capsys):
    out = tmp_path / "img"
    src = str(REPO_DATA / "astronaut" / "astronaut.png")
    assert main(["fit", "image", src, "--size", "16", "--steps", "3", "--params", "20000", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["height"] == 16 and (out / "prediction.png").exists()
    assert (out / "checkpoint.safetensors").exists() and json.loads((out / "config.json").read_text())["field"]
    mesh_path = tmp_path / "sphere.obj"
    sphere.export(mesh_path)
    out = tmp_path / "sdf"
    assert main(["fit", "sdf", str(mesh_path), "--steps", "20", "--params", "20000", "--resolution", "24",
                 "--samples", "4000", "--out", str(out)]) == 0
    assert trimesh.load(out / "mesh.ply").faces.shape[0] > 0
    assert {"chamfer", "normal_consistency", "iou"} <= set(json.loads((out / "metrics.json").read_text()))
    assert main(["fit", "image", src, "--size", "2", "--out", str(out)]) == 2
    assert main(["fit", "sdf", str(tmp_path / "missing.obj"), "--out", str(out)]) == 2
    assert "missing.obj" in capsys.readouterr().err
