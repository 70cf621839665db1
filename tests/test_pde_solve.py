"""End to end: short solves lower the error, the CLI writes its files, bad options give clear errors."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from omnifield.errors import OmnifieldError
from omnifield.pde import cli, registry
from omnifield.pde.field import ENCODINGS, PDEField, UnknownConfig
from omnifield.pde.problem import unit_points
from omnifield.pde.solvers import solve
from omnifield.pde.solvers.causal import CausalSchedule
from omnifield.pde.solvers.loss import PhysicsLoss, rad_select
from omnifield.pde.solvers.run import build_solution
from omnifield.pde.solvers.settings import SolverSettings

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = SolverSettings(width=16, depth=2, steps=0, lbfgs_steps=0, n_interior=256, n_condition=64, lr=5e-3, lr_final=1e-3)


@pytest.mark.parametrize("solver, extra", [("hard", {}), ("pinn", {}), ("pig", dict(field="gaussian_embedding", depth=1, n_gaussians=64, gaussian_sigma=0.15, double=False))])
def test_short_solve_lowers_the_error(tmp_path, solver, extra):
    settings = replace(TINY, **extra)
    before = solve("heat", solver, settings, tmp_path / "before", quiet=True)["rel_l2"]
    after = solve("heat", solver, replace(settings, steps=100), tmp_path / "after", quiet=True)["rel_l2"]
    assert after < 0.7 * before


def test_causal_solve_runs_and_records_weights(tmp_path):
    settings = replace(TINY, steps=20, chunks=8, eps="1,10")
    metrics = solve("heat", "causal", settings, tmp_path, quiet=True)
    history = json.loads((tmp_path / "loss_history.json").read_text())
    assert 0.0 <= history[-1]["min_weight"] <= 1.0
    assert np.isfinite(metrics["rel_l2"])


def test_rad_select_follows_the_residual_density():
    g = torch.Generator().manual_seed(0)
    residual = torch.cat([torch.full((900,), 1e-3), torch.full((100,), 10.0)])  # 10 % of the pool is "the shock"
    picked = rad_select(residual, 200, k=1.0, c=0.0, generator=g)
    assert len(set(picked.tolist())) == 200  # without replacement
    assert float((picked >= 900).float().mean()) > 0.45  # uniform sampling would give 0.1
    uniform = rad_select(residual, 200, k=0.0, c=1.0, generator=g)  # k = 0: every point equally likely
    assert 0.0 < float((uniform >= 900).float().mean()) < 0.25


def test_adaptive_sampling_crowds_points_where_the_residual_is_large(tmp_path):
    problem = registry.get_problem("burgers")
    settings = replace(TINY, adaptive_k=2.0, adaptive_c=0.0)
    solution, soft = build_solution("hard", problem, settings, torch.Generator().manual_seed(0))
    loss = PhysicsLoss(problem, solution, 512, 64, soft, adaptive_k=2.0, adaptive_c=0.0)
    g = torch.Generator().manual_seed(1)
    adaptive = loss.sample(g)["interior"]
    uniform = problem.sample_interior(512, g)
    assert adaptive.shape == uniform.shape
    mean_r = lambda x: float(loss.residual_magnitude(x).mean())  # noqa: E731
    assert mean_r(adaptive) > 1.2 * mean_r(uniform)  # an untrained net: residuals vary by a few times only
    metrics = solve("burgers", "hard", replace(settings, steps=10), tmp_path, quiet=True)
    assert np.isfinite(metrics["rel_l2"])
    with pytest.raises(OmnifieldError, match="adaptive-k"):
        solve("heat", "causal", replace(settings, steps=1), tmp_path, quiet=True)


def test_sobol_points_cover_every_interval_once():
    def covered(pts):  # intervals [i/64, (i+1)/64) holding a point, per axis
        return [len(set((pts[:, a] * 64).long().tolist())) for a in range(pts.shape[1])]

    sobol = unit_points(64, 2, torch.Generator().manual_seed(0), quasi=True)
    assert covered(sobol) == [64, 64]  # one point per interval: an even cover
    assert max(covered(unit_points(64, 2, torch.Generator().manual_seed(0)))) < 56  # random points leave gaps
    again = unit_points(64, 2, torch.Generator().manual_seed(0), quasi=True)
    other = unit_points(64, 2, torch.Generator().manual_seed(1), quasi=True)
    assert torch.equal(sobol, again) and not torch.equal(sobol, other)  # the scrambling follows the generator


def test_sobol_causal_batch_puts_each_point_in_the_chunk_of_its_time():
    problem = registry.get_problem("allen_cahn")
    settings = replace(TINY, sampling="sobol")
    solution, soft = build_solution("causal", problem, settings, torch.Generator().manual_seed(0))
    loss = PhysicsLoss(problem, solution, 256, 16, soft, causal=CausalSchedule(n_chunks=32), sampling="sobol")
    batch = loss.sample(torch.Generator().manual_seed(0))
    t, chunk = batch["interior"][:, 1], batch["chunk"]
    assert torch.equal(chunk, (t * 32).long())  # time axis [0, 1]
    assert torch.bincount(chunk, minlength=32).tolist() == [8] * 32
    with pytest.raises(OmnifieldError, match="--sampling"):
        PhysicsLoss(problem, solution, 256, 16, soft, sampling="grid")


def test_cli_solve_writes_plots_losses_and_grid(tmp_path, capsys):
    args = cli.parse_solve_args(["heat", "--solver", "hard", "--steps", "5", "--lbfgs-steps", "2", "--width", "8",
                                 "--depth", "1", "--n-interior", "64", "--quiet", "--out", str(tmp_path)])
    assert args.func(args) == 0
    for name in ("solution.npz", "solution.png", "loss.png", "metrics.json", "loss_history.json"):
        assert (tmp_path / name).stat().st_size > 0
    data = np.load(tmp_path / "solution.npz")
    assert data["prediction"].shape == data["reference"].shape == (51, 51, 11, 1)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["rel_l2"] == pytest.approx(json.loads((tmp_path / "metrics.json").read_text())["rel_l2"])


def test_cli_list_names_problems_and_solvers(capsys):
    args = cli.parse_solve_args(["heat"])  # registers everything
    assert args.solver == "pinn"
    cli._list(args)
    out = capsys.readouterr().out
    for name in ("burgers", "allen_cahn", "helmholtz", "poisson_lshape", "heat", "kovasznay", "pinn", "causal", "moe", "pig"):
        assert name in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["poisson_lshape", "--solver", "hard"], "no exact output transform"),
        (["heat", "--solver", "nope"], "unknown PDE solver"),
        (["nope"], "unknown PDE problem"),
        (["helmholtz", "--solver", "causal"], "no time axis"),
        (["heat", "--solver", "causal", "--eps", "a,b"], "--eps"),
        (["heat", "--solver", "moe", "--basis", "4", "--constraint-points", "8"], "constraint-points"),
    ],
)
def test_bad_options_raise_clear_errors(tmp_path, argv, message):
    args = cli.parse_solve_args([*argv, "--steps", "1", "--lbfgs-steps", "0", "--out", str(tmp_path), "--quiet"])
    with pytest.raises(OmnifieldError, match=message):
        args.func(args)


def test_unknown_field_is_rejected():
    with pytest.raises(OmnifieldError, match="--field"):
        PDEField((0.0,), (1.0,), 1, UnknownConfig(encoding="voxels"))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_gives_the_unknown_and_its_derivatives(encoding):
    torch.manual_seed(0)
    field = PDEField((-1.0, 0.0), (1.0, 1.0), 1, UnknownConfig(encoding=encoding, width=8, n_hidden_layers=1))
    x = torch.rand(16, 2, requires_grad=True)
    u = field(x)
    (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    assert u.shape == (16, 1) and du.shape == (16, 2) and torch.isfinite(du).all()


def test_periodic_embedding_makes_the_field_exactly_periodic():
    torch.manual_seed(0)
    field = PDEField((-1.0, 0.0), (1.0, 1.0), 1, UnknownConfig(n_harmonics=3), periodic_axes=(0,)).double()
    t = torch.rand(20, 1, dtype=torch.float64)
    left = torch.cat([-torch.ones_like(t), t], -1)
    right = torch.cat([torch.ones_like(t), t], -1)
    torch.testing.assert_close(field(left), field(right), atol=1e-13, rtol=0)


def test_registry_all_is_complete():
    import omnifield.pde.problems as problems
    import omnifield.pde.solvers as solvers

    for module in (problems, solvers):
        for name in module.__all__:
            assert hasattr(module, name)
    assert set(solvers.SOLVERS) <= set(registry.solver_names())


def test_modified_mlp_is_periodic_and_differentiable():
    torch.manual_seed(0)
    cfg = UnknownConfig(n_harmonics=2, width=8, n_hidden_layers=2, arch="modified")
    field = PDEField((-1.0, 0.0), (1.0, 1.0), 1, cfg, periodic_axes=(0,)).double()
    assert field.gates is not None
    t = torch.rand(20, 1, dtype=torch.float64)
    left, right = torch.cat([-torch.ones_like(t), t], -1), torch.cat([torch.ones_like(t), t], -1)
    torch.testing.assert_close(field(left), field(right), atol=1e-13, rtol=0)
    x = torch.rand(16, 2, dtype=torch.float64, requires_grad=True)
    (du,) = torch.autograd.grad(field(x).sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(du[:, 0].sum(), x)
    assert torch.isfinite(d2).all() and d2.abs().sum() > 0
    with pytest.raises(OmnifieldError, match="--arch"):
        PDEField((0.0,), (1.0,), 1, UnknownConfig(arch="resnet"))


def test_lbfgs_resampling_splits_the_run_into_batches(tmp_path):
    settings = replace(TINY, lbfgs_steps=7, lbfgs_resample_every=3, lbfgs_points=128)
    metrics = solve("heat", "hard", settings, tmp_path, quiet=True)
    assert np.isfinite(metrics["rel_l2"])
    history = json.loads((tmp_path / "loss_history.json").read_text())
    assert [h["step"] for h in history if h["phase"] == "lbfgs"] == [3, 6, 7]
    with pytest.raises(OmnifieldError, match="lbfgs-resample-every"):
        solve("heat", "hard", replace(settings, lbfgs_resample_every=-1), tmp_path, quiet=True)
