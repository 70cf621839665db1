"""Build the solution for a solver, train it under the engine (resumable), measure it against the reference and
write the outputs."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from omnifield.config import config_from_dict, config_to_dict, register_config
from omnifield.engine import Engine, LoopConfig
from omnifield.errors import OmnifieldError
from omnifield.fields import GaussianEmbeddingConfig
from omnifield.io.checkpoint import load_checkpoint, remove_stale_temporaries
from omnifield.io.run_folder import checkpoint_meta
from omnifield.pde.field import PDEField, UnknownConfig, encoding_lr, parameter_groups
from omnifield.pde.output import write_outputs
from omnifield.pde.problem import Dirichlet, Periodic, Problem
from omnifield.pde.registry import get_problem
from omnifield.pde.solvers.causal import CausalSchedule
from omnifield.pde.solvers.jet import JetField, jet_supported
from omnifield.pde.solvers.loss import PhysicsLoss
from omnifield.pde.solvers.moe import MixtureOfExpertsConstraint
from omnifield.pde.solvers.optimize import OptimizeSettings, PhysicsTask
from omnifield.pde.solvers.settings import SolverSettings, given_settings, settings_for

SOLVERS = ("pinn", "hard", "causal", "moe", "pig")
CHECKPOINT = "solver_state.safetensors"  # not checkpoint.safetensors: that name marks a radiance-field run
LOG = "log.jsonl"


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


@register_config("pde_solve")
@dataclass
class SolveConfig:
    """One ``pde solve`` of a PINN-family solver: the solver, its settings, the seed, the progress bar and
    whether to continue the run in the output folder from its checkpoint."""

    solver: str = "pinn"
    settings: SolverSettings = field(default_factory=SolverSettings)
    seed: int = 0
    progress: bool = True
    resume: bool = False


def solve(problem_name: str, solver: str, settings: SolverSettings, out_dir: Path, seed: int = 0,
          quiet: bool = False, resume: bool = False) -> dict:
    """Run ``solver`` on problem ``problem_name`` under the training engine; returns metrics (``rel_l2``,
    ``time_s`` (training time, resumed runs included), ``n_params``, ...).

    The run lives in ``out_dir``: ``log.jsonl``, the checkpoint :data:`CHECKPOINT` (every
    ``settings.checkpoint_every_s`` seconds, at the end and on Ctrl-C) and the outputs of
    :func:`~omnifield.pde.output.write_outputs`. ``resume`` continues from the checkpoint; the settings must
    build the same solution (:func:`saved_settings` gives the run's own)."""
    if solver not in SOLVERS:
        raise OmnifieldError(f"unknown solver {solver!r}; choose from {', '.join(SOLVERS)}")
    settings.check()
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
                           lr_final=settings.lr_final, resample_every=settings.resample_every,
                           lbfgs_block=settings.lbfgs_block,
                           lbfgs_dtype=torch.float64 if settings.lbfgs_double else None,
                           lbfgs_points=settings.lbfgs_points, lbfgs_resample_every=settings.lbfgs_resample_every)
    grid_lr = settings.encoding_lr if settings.encoding_lr is not None else encoding_lr(settings.field, settings.lr)
    groups = parameter_groups(solution, settings.lr, grid_lr)
    out_dir = Path(out_dir)
    path = out_dir / CHECKPOINT
    identity = {"problem": problem_name, "solver": solver, "seed": seed, "settings": config_to_dict(settings)}
    task = PhysicsTask(loss, groups, opt, generator, path, identity)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    if resume:
        tensors, meta = load_checkpoint(path)
        if (meta.get("problem"), meta.get("solver")) != (problem_name, solver):
            raise OmnifieldError(f"{path}: holds a {meta.get('problem')!r} {meta.get('solver')!r} solve, not "
                                 f"{problem_name!r} {solver!r}; resume it with those or drop --resume")
    else:
        for stale in (path, out_dir / LOG):  # a fresh solve replaces the folder's run
            stale.unlink(missing_ok=True)
    engine = None
    if task.total_steps > 0:
        loop = LoopConfig(steps=task.total_steps, minutes=settings.minutes, log_every=settings.log_every,
                          checkpoint_every_s=settings.checkpoint_every_s, grad_clip=settings.grad_clip,
                          progress=not quiet)
        engine = Engine(task, loop, log_path=out_dir / LOG, description="pde", postfix=("loss",), where=str(out_dir))
        if resume:
            engine.restore(tensors, meta, str(path))
            engine.cfg.steps = task.total_steps  # the blocks a resumed (perhaps extended) L-BFGS phase has left
        engine.run()
    metrics = {
        "time_s": engine.elapsed if engine is not None else 0.0,
        "n_params": sum(p.numel() for g in groups for p in g["params"]),
        "final_loss": task.history[-1]["loss"] if task.history else None,
    }
    return write_outputs(problem, solution, task.history, out_dir, metrics)


def saved_settings(out_dir: Path) -> tuple[SolverSettings, dict]:
    """The settings and identity (``problem``, ``solver``, ``seed``) of the solve checkpointed in ``out_dir``."""
    path = Path(out_dir) / CHECKPOINT
    meta = checkpoint_meta(path) if path.is_file() else None
    if meta is None:
        raise OmnifieldError(f"{path}: no solver checkpoint to resume (solve without --resume first)")
    settings = config_from_dict(meta.get("settings"), f"{path}:settings")
    if not isinstance(settings, SolverSettings):
        raise OmnifieldError(f"{path}: not a PDE solver checkpoint")
    return settings, meta


def configure(problem_name: str, args: argparse.Namespace) -> SolveConfig:
    """The :class:`SolveConfig` of ``omnifield pde solve`` options: the solver's defaults, the tuned
    ``(problem, solver)`` ones (with ``--resume``: the run's saved settings and seed instead), then the options
    given, then ``--set KEY=VALUE``."""
    base, seed = None, args.seed
    if args.resume:
        base, meta = saved_settings(args.out)
        seed = int(meta.get("seed", seed))
    settings = settings_for(args.solver, problem_name, given_settings(args), args.set or (), base)
    return SolveConfig(solver=args.solver, settings=settings, seed=seed, progress=not args.quiet, resume=args.resume)


def run_solver(solver: str):
    """The registry entry of ``solver``: ``run(problem_name, config: SolveConfig, out_dir) -> metrics``."""

    def run(problem_name: str, cfg: SolveConfig, out_dir: Path) -> dict:
        if cfg.solver != solver:
            raise OmnifieldError(f"the {solver!r} solver was given a config of the {cfg.solver!r} solver")
        return solve(problem_name, solver, cfg.settings, out_dir, seed=cfg.seed, quiet=not cfg.progress,
                     resume=cfg.resume)

    run.__doc__ = f"Solve a registered problem with the {solver!r} solver."
    return run
