"""The coverage diagnostic of held-out views: counts of training views that see each pixel's surface, against
camera footprints on a plane worked out by hand, occlusion, masked scores and the eval option."""

from __future__ import annotations

import json
import math

import pytest
import torch

from omnifield.apps.recon.coverage import Coverage, coverage_picture, covered_scores
from omnifield.cli import main
from omnifield.metrics import psnr
from omnifield.renderers.cameras import Cameras
from omnifield.renderers.volume import VolumeRenderer, VolumeRendererConfig
from tests.test_recon_cli import TINY, tiny_scene  # noqa: F401 - fixture re-used

W, H, F, HEIGHT = 24, 16, 20.0, 2.0


def _cameras_above(xs: list[float]) -> Cameras:
    """Cameras at height 2 above the plane z = 0, at ``x = xs``, looking straight down."""
    n = len(xs)
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 0, 3] = torch.tensor(xs)
    c2w[:, 2, 3] = HEIGHT  # OpenGL axes: the camera looks down its -z, which is the world's -z here
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return Cameras(c2w, full(F), full(F), full(W / 2), full(H / 2), W, H)


class _PlaneRun:
    """A stand-in for a run: rays stop on the plane z = 0 (``nearer`` views: at that share of the way)."""

    def __init__(self, nearer: dict[int, float] | None = None):
        self.renderer = VolumeRenderer((-10, -10, -10, 10, 10, 10), VolumeRendererConfig())
        self.nearer = nearer or {}

    def render(self, cameras: Cameras, index: int, share: float = 1.0) -> dict:
        _, directions = cameras.image_rays(index)
        distance = HEIGHT / -directions[:, 2] * share
        return {"depth": distance.reshape(H, W), "alpha": torch.ones(H, W)}

    def training_render(self, cameras: Cameras, index: int) -> dict:
        return self.render(cameras, index, self.nearer.get(index, 1.0))


def _footprint_count(test: Cameras, train_xs: list[float]) -> torch.Tensor:
    """By hand: a camera at height h sees the plane within x in cx -+ (W/2) h / F, y in -+ (H/2) h / F."""
    origins, directions = test.image_rays(0)
    ground = origins + directions * (HEIGHT / -directions[:, 2])[:, None]
    half_x, half_y = W / 2 * HEIGHT / F, H / 2 * HEIGHT / F
    count = sum(((ground[:, 0] - x).abs() < half_x) & (ground[:, 1].abs() < half_y) for x in train_xs)
    return count.float().reshape(H, W)


def test_counts_are_the_training_views_whose_footprint_holds_the_surface():
    train_xs = [0.0, 0.5, 3.0]
    run = _PlaneRun()
    train = _cameras_above(train_xs)
    coverage = Coverage(run, train, run.training_render, 2, progress=False)
    test = _cameras_above([1.2])
    counts = coverage.count(test, 0, run.render(test, 0))
    expected = _footprint_count(test, train_xs)
    assert set(expected.unique().tolist()) >= {1.0, 2.0}  # the held-out view straddles footprints
    # pixels whose ground point lies on a footprint's edge may go either way
    assert float((counts != expected).float().mean()) < 0.06
    assert bool((counts - expected).abs().max() <= 1)


def test_a_view_whose_own_surface_is_nearer_does_not_see_the_point():
    train = _cameras_above([0.0, 0.5])
    test = _cameras_above([0.2])
    run = _PlaneRun(nearer={1: 0.5})  # view 1 stops its rays halfway: something stands in front of the plane
    counts = Coverage(run, train, run.training_render, 2, progress=False).count(test, 0, run.render(test, 0))
    torch.testing.assert_close(counts, _footprint_count(test, [0.0]), atol=1, rtol=0)
    assert float((counts == _footprint_count(test, [0.0])).float().mean()) > 0.94


def test_scores_split_the_pixels_by_coverage():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(8, 10, 3, generator=g)
    pred = (gt + 0.1 * torch.randn(8, 10, 3, generator=g)).clamp(0, 1)
    seen_by = torch.zeros(8, 10)
    seen_by[:, :6] = 2.0
    seen_by[:, 6:8] = 1.0
    scores = covered_scores(pred, gt, seen_by, min_views=2)
    assert scores["covered"] == pytest.approx(0.6)
    mse_covered = float(((pred[:, :6] - gt[:, :6]) ** 2).mean())
    assert scores["psnr_covered"] == pytest.approx(-10 * math.log10(mse_covered), rel=1e-5)
    assert scores["psnr_uncovered"] == pytest.approx(psnr(pred[:, 6:], gt[:, 6:]), rel=1e-5)
    assert covered_scores(pred, gt, seen_by, min_views=0)["psnr_uncovered"] is None
    picture = coverage_picture(pred, seen_by >= 2)
    assert torch.equal(picture[:, :6], pred[:, :6])
    torch.testing.assert_close(picture[:, 6:, 0], 0.5 * pred[:, 6:, 0] + 0.5)


def test_eval_coverage_writes_the_scores_and_pictures(tiny_scene, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    assert main(["train", str(tiny_scene), "--out", str(out), "--steps", "4", "--no-eval", *TINY]) == 0
    assert main(["eval", str(out), "--coverage", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    summary = metrics["coverage"]
    assert summary["min_views"] == 2 and 0.0 <= summary["covered"] <= 1.0
    assert {"covered", "psnr_covered", "psnr_uncovered"} <= set(metrics["views"][0])
    assert (out / "renders" / "test" / "r_0_coverage.png").exists()
    assert "training views" in capsys.readouterr().out
    assert main(["eval", str(out), "--coverage", "-1"]) == 2
    assert "--coverage must be >= 0" in capsys.readouterr().err
