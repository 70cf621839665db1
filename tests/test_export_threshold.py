"""Export thresholds chosen from the run's density distribution, and refusals of empty / all-occupied exports."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from omnifield.apps.recon.run import Run
from omnifield.cli import main
from omnifield.errors import OmnifieldError
from omnifield.renderers.density_threshold import (
    MAX_KEPT,
    MIN_CONTRAST,
    SUGGEST_KEPT,
    choose_threshold,
    measured_densities,
    otsu_log_density,
    run_density,
)


def two_modes(n_empty: int, n_dense: int, empty_log10: float = -2.0, dense_log10: float = 2.0, spread: float = 0.2):
    """Densities of a synthetic occupancy grid: log-normal empty and dense modes (evenly spaced normal
    quantiles, so each mode is exactly symmetric about its centre), shuffled."""
    from scipy.stats import norm

    mode = lambda n, centre: centre + spread * norm.ppf((np.arange(n) + 0.5) / n)
    logd = np.concatenate([mode(n_empty, empty_log10), mode(n_dense, dense_log10)])
    return 10 ** np.random.default_rng(0).permutation(logd)


def test_equal_modes_split_at_their_geometric_midpoint_and_keep_the_dense_cells():
    density = two_modes(20_000, 20_000, empty_log10=-2.0, dense_log10=2.0)
    chosen = choose_threshold(density)
    assert abs(np.log10(chosen.value)) < 0.01  # Otsu's split of two equal, symmetric modes: the midpoint
    assert chosen.kept == 0.5 and chosen.source == "chosen"
    _, contrast = otsu_log_density(density)
    assert np.log10(contrast) == pytest.approx(4.0, abs=0.05)  # the modes' geometric means, 4 decades apart


def test_a_small_surface_mode_is_kept_whole():
    density = two_modes(95_000, 5_000, empty_log10=-1.5, dense_log10=1.5)
    density[np.flatnonzero(density < 1)[:1000]] = 0.0  # numerically empty cells count as the floor, not -inf
    chosen = choose_threshold(density)
    logd = np.log10(np.maximum(density, 1e-9))
    gap = logd[logd < 0].max(), logd[logd > 0].min()
    assert np.log10(chosen.value) == pytest.approx(np.mean(gap), abs=0.01)  # the middle of the gap
    assert chosen.kept == 0.05


def test_a_given_threshold_wins_and_degenerate_ones_are_refused():
    density = two_modes(8_000, 2_000)
    given = choose_threshold(density, given=50.0)
    assert given.value == 50.0 and given.source == "given"
    assert given.kept == pytest.approx(float((density > 50.0).mean()))
    otsu = otsu_log_density(density)[0]
    with pytest.raises(OmnifieldError, match=rf"keeps no cell .* e\.g\. {otsu:.4g}"):
        choose_threshold(density, given=1e6)
    with pytest.raises(OmnifieldError, match=r"keeps 100% of the cells .*\(nearly\) all occupied.*--threshold"):
        choose_threshold(density, given=1e-6)
    assert MAX_KEPT < 1


def test_a_unimodal_field_has_no_separation_and_gets_a_suggestion():
    density = 10 ** np.random.default_rng(1).normal(0.1, 0.05, 10_000)  # a field early in training
    assert otsu_log_density(density)[1] < MIN_CONTRAST
    suggestion = np.quantile(density, 1 - SUGGEST_KEPT)
    with pytest.raises(OmnifieldError, match=rf"no empty/occupied separation.*train longer.*--threshold "
                                             rf"{suggestion:.4g}"):
        choose_threshold(density)
    with pytest.raises(OmnifieldError, match="no empty/occupied separation"):
        choose_threshold(np.full(100, 1.4))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Two training steps on lego at 25x25 with a small hash grid: the density is still uniform."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert main(["train", "data/lego_200", "--out", str(out), "--steps", "2", "--downscale", "8", "--no-eval",
                 "--batch-rays", "128", "--target-samples", "0", "--set", "field.encoding.log2_hashmap_size=12",
                 "--set", "renderer.grid.resolution=32"]) == 0
    return out


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("omnifield: error:")]
    assert len(err) == 1
    return err[0]


@pytest.mark.parametrize("extra, message", [
    ([], r"no empty/occupied separation yet .* train longer, or pass --threshold \d"),
    (["--threshold", "1e-3"], r"keeps 100% of the cells .*\(nearly\) all occupied; train longer, or pass --threshold"),
    (["--threshold", "1e4"], r"keeps no cell .*empty; train longer, or pass a lower --threshold, e\.g\. \d"),
])
def test_nav_export_of_a_short_run_is_refused(tiny_run, tmp_path, capsys, extra, message):
    out = tmp_path / "grid"
    assert main(["nav", "export", str(tiny_run), "--out", str(out), "--voxel", "0.25", *extra]) == 2
    assert not out.exists()  # refused before anything is written
    assert re.search(message, _one_error_line(capsys))


@pytest.mark.parametrize("target", ["mesh", "points"])
def test_mesh_and_points_of_a_short_run_are_refused(tiny_run, tmp_path, capsys, target):
    out = tmp_path / "x.ply"
    assert main(["export", target, str(tiny_run), "--out", str(out), "--resolution", "16", "--quiet"]) == 2
    assert "no empty/occupied separation yet" in _one_error_line(capsys) and not out.exists()


def test_measured_densities_are_the_grid_cells_inside_the_hull(tiny_run):
    run, _, _ = Run.open(tiny_run)
    grid = run.renderer.grid
    measured = measured_densities(run)
    inside = grid.allowed.reshape(-1)
    assert 0 < inside.float().mean() < 1  # lego has alpha masks: the visual hull carved the grid
    np.testing.assert_allclose(measured, (grid.values[inside] / run.renderer.step_size).numpy())
    # the exported density is zero in carved cells and the field's own inside the hull
    g = grid.cfg.resolution
    lo, hi = grid.aabb[:3], grid.aabb[3:]
    ijk = torch.nonzero(grid.allowed.new_ones(grid.allowed.shape))
    centres = lo + (ijk.float() + 0.5) / g * (hi - lo)
    with torch.no_grad():
        got, field = run_density(run)(centres), run.field.density(centres)
    keep = grid.allowed[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
    assert (got[~keep] == 0).all() and torch.equal(got[keep], field[keep])
