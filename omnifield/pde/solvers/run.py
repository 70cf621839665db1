"""Build the solution for a solver, train it, measure it against the reference and write the outputs."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from omnifield.errors import OmnifieldError
from omnifield.fields import GaussianEmbeddingConfig
from omnifield.pde.field import PDEField, UnknownConfig, encoding_lr, parameter_groups
from omnifield.pde.output import write_outputs
from omnifield.pde.problem import Dirichlet, Periodic, Problem
from omnifield.pde.registry import get_problem
from omnifield.pde.solvers.causal import CausalSchedule
from omnifield.pde.solvers.jet import JetField, jet_supported
from omnifield.pde.solvers.loss import PhysicsLoss
from omnifield.pde.solvers.moe import MixtureOfExpertsConstraint
from omnifield.pde.solvers.optimize import OptimizeSettings, optimize
from omnifield.pde.solvers.settings import SolverSettings, resolve_settings

SOLVERS = ("pinn", "hard", "causal", "moe", "pig")


class HardOutput(nn.Module):
    """``u(x) = problem.hard_output(x, field(x))``: initial/boundary values hold by construction."""

    def __init__(self, problem: Problem, field: nn.Module):
        super().__init__()
        self.problem, self.field = problem, field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.problem.hard_output(x, self.field(x))


def _field(problem: Problem, s: SolverSettings, n_outputs: int) -> PDEField:
    enc_cfg = None
    if s.field == "gaussian_embedding":
        enc_cfg = GaussianEmbeddingConfig(n_gaussians=s.n_gaussians, n_features=s.gaussian_features,
                                          init_sigma=s.gaussian_sigma, n_neighbors=s.gaussian_neighbors)
    cfg = UnknownConfig(encoding=s.field, encoding_config=enc_cfg, width=s.width, n_hidden_layers=s.depth,
                        n_harmonics=s.n_harmonics, arch=s.arch)
    return PDEField(problem.lo, problem.hi, n_outputs, cfg, problem.periodic_axes)


def build_solution(solver: str, problem: Problem, s: SolverSettings, generator: torch.Generator):
    """The solution module and the conditions it leaves to soft losses.

    ``hard`` always uses the problem's exact output transform; ``causal`` and ``pig`` use it when the
    problem has one; ``moe`` imposes the Dirichlet/initial conditions per expert. With no encoding,
    periodic axes are embedded (exactly periodic), so their periodic conditions need no loss.
    """
    if solver == "hard" and not problem.has_hard_output:
        raise OmnifieldError(
            f"--solver hard: problem {problem.name!r} has no exact output transform; use --solver moe or pinn"
        )
    if solver == "moe":
        basis = _field(problem, s, s.basis)
        solution = MixtureOfExpertsConstraint(problem, basis, s.basis, s.experts, s.constraint_points, generator)
    else:
        field = _field(problem, s, problem.n_outputs)
        if solver == "pig" and s.double and jet_supported(field):
            field = JetField(field)  # same parameters, residual derivatives in closed form
        if solver == "hard" or (solver in ("causal", "pig") and problem.has_hard_output):
            solution = HardOutput(problem, field)
        else:
            solution = field
    imposed = (Dirichlet,) if isinstance(solution, (HardOutput, MixtureOfExpertsConstraint)) else ()
    if s.field == "none":
        imposed += (Periodic,)
    return solution, [c for c in problem.conditions if not isinstance(c, imposed)]


def _parse_eps(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise OmnifieldError(f"--eps: expected comma-separated numbers, got {text!r}") from None


def solve(problem_name: str, solver: str, settings: SolverSettings, out_dir: Path, seed: int = 0,
          quiet: bool = False) -> dict:
    """Run ``solver`` on problem ``problem_name``; returns metrics (``rel_l2``, ``time_s``, ``n_params``, ...)."""
    if solver not in SOLVERS:
        raise OmnifieldError(f"unknown solver {solver!r}; choose from {', '.join(SOLVERS)}")
    if settings.lbfgs_points < 0 or settings.lbfgs_resample_every < 0:
        raise OmnifieldError("--lbfgs-points and --lbfgs-resample-every must be >= 0 (0: off)")
    problem = get_problem(problem_name)
    if not isinstance(problem, Problem):
        raise OmnifieldError(f"--solver {solver}: problem {problem_name!r} is not a collocation problem of omnifield.pde")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    dtype = torch.float64 if settings.double else torch.float32
    solution, soft = build_solution(solver, problem, settings, generator)
    solution = solution.to(dtype)
    causal = None
    if solver == "causal":
        try:
            causal = CausalSchedule(_parse_eps(settings.eps), n_chunks=settings.chunks)
        except ValueError as exc:
            raise OmnifieldError(f"--eps/--chunks: {exc}") from None
    loss = PhysicsLoss(problem, solution, settings.n_interior, settings.n_condition, soft,
                       settings.condition_weight, causal, dtype, settings.adaptive_k, settings.adaptive_c,
                       sampling=settings.sampling)
    opt = OptimizeSettings(adam_steps=settings.steps, lbfgs_steps=settings.lbfgs_steps, lr=settings.lr,
                           lr_final=settings.lr_final, resample_every=max(1, settings.resample_every), quiet=quiet,
                           lbfgs_dtype=torch.float64 if settings.lbfgs_double else None,
                           lbfgs_points=settings.lbfgs_points, lbfgs_resample_every=settings.lbfgs_resample_every)
    grid_lr = settings.encoding_lr if settings.encoding_lr is not None else encoding_lr(settings.field, settings.lr)
    groups = parameter_groups(solution, settings.lr, grid_lr)
    start = time.perf_counter()
    history = optimize(loss, groups, opt, generator)
    elapsed = time.perf_counter() - start
    metrics = {
        "time_s": elapsed,
        "n_params": sum(p.numel() for g in groups for p in g["params"]),
        "final_loss": history[-1]["loss"] if history else None,
    }
    return write_outputs(problem, solution, history, out_dir, metrics)


def run_solver(solver: str):
    """The registry entry of ``solver``: ``run(problem_name, args, out_dir) -> metrics``."""

    def run(problem_name: str, args: argparse.Namespace, out_dir: Path) -> dict:
        settings = resolve_settings(solver, problem_name, args)
        return solve(problem_name, solver, settings, out_dir, seed=getattr(args, "seed", 0),
                     quiet=getattr(args, "quiet", False))

    run.__doc__ = f"Solve a registered problem with the {solver!r} solver."
    return run
