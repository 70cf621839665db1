"""``omnifield pde solve PROBLEM --solver insr``: step a problem, compare with its references, write pictures.

The command builds an :class:`InsrSettings` (its options, ``--set KEY=VALUE``)
and :func:`run` steps the problem under the training engine, one engine step per
time step. Outputs in the run folder: ``state.safetensors``/``state.json`` (the
checkpoint: after the initial fit, every ``checkpoint_every_s`` seconds (default:
after every step), at the end and on Ctrl-C; ``--resume`` continues the run in
``--out``, ``--insr-resume PATH`` one saved anywhere), ``log.jsonl``,
``animation.gif``, ``error_over_time.png``, ``metrics.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnifield.cli_options import add_old_name
from omnifield.config import register_config
from omnifield.errors import OmnifieldError
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.sine_mlp import SirenConfig
from omnifield.io.atomic import remove_stale_temporaries, write_text_atomic
from omnifield.pde import registry
from omnifield.pde.field import ENCODING_LR_SCALE, ENCODINGS, default_encoding_config
from omnifield.pde.insr.advection import AdvectionProblem
from omnifield.pde.insr.compare import Comparison, compare, relative_l2
from omnifield.pde.insr.plots import write_animation, write_error_plot
from omnifield.pde.insr.problem import InsrProblem
from omnifield.pde.insr.stepper import InsrStepper, InsrTask, StepperConfig
from omnifield.pde.insr.taylor_green import TaylorGreenProblem
from omnifield.pde.solvers.settings import check_numbers, override_config

INSR_PROBLEMS = ("advection", "taylor_green", "elasticity")
STATE = "state.json"


@register_config("pde_insr")
@dataclass
class InsrSettings:
    """One ``pde solve --solver insr`` run (``None``: the problem's default). ``steps`` caps each time step's
    iterations; ``params`` are ``NAME=VALUE`` problem parameters; ``resume`` continues the run in the output
    folder, ``resume_from`` (a ``state.json``) one saved elsewhere."""

    time_steps: int | None = None
    dt: float | None = None
    rule: str | None = None
    field: str = "none"
    width: int | None = None
    layers: int | None = None
    lr: float | None = None
    samples: int | None = None
    init_iters: int | None = None
    steps: int | None = None
    cold_start: bool = False
    params: tuple[str, ...] = ()
    animation: str = "gif"
    seed: int = 0
    minutes: float = 0.0
    checkpoint_every_s: float = 0.0
    progress: bool = True
    resume: bool = False
    resume_from: str | None = None

    def check(self) -> None:
        """Refuse numbers out of range, named by their options (``--insr-dt must be > 0``)."""
        shared = ("steps", "seed", "minutes", "checkpoint_every_s")
        values = {(k if k in shared else f"insr_{k}"): v for k, v in dataclasses.asdict(self).items() if v is not None}
        check_numbers(values, zero_allowed={"seed", "minutes", "checkpoint_every_s"})
        if self.animation not in ("gif", "mp4"):
            raise OmnifieldError(f"--insr-animation: expected gif or mp4, got {self.animation!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """INSR options of ``omnifield pde solve`` (``--steps`` is the per-step iteration cap)."""
    g = parser.add_argument_group("INSR (--solver insr)")
    g.add_argument("--insr-time-steps", type=int, default=None, help="number of time steps (problem default)")
    g.add_argument("--insr-dt", type=float, default=None, help="time step (problem default)")
    g.add_argument("--insr-rule", default=None, help="midpoint or implicit_euler (default: midpoint where supported)")
    # the state's backend is --method, as for every solver (none: SIREN on the coordinates; cam: a tanh MLP with
    # coordinate-aware modulation grids; otherwise that encoding, PDE-sized, feeding a tanh MLP)
    add_old_name(g, "--insr-field", "--method", dest="field", metavar="NAME")
    g.add_argument("--insr-width", type=int, default=None, help="decoder width (problem default)")
    g.add_argument("--insr-layers", type=int, default=None, help="decoder hidden layers (problem default)")
    g.add_argument("--insr-lr", type=float, default=None, help="Adam learning rate (problem default)")
    g.add_argument("--insr-samples", type=int, default=None, help="points sampled per iteration")
    g.add_argument("--insr-init-iters", type=int, default=None, help="iteration cap of the initial-condition fit")
    g.add_argument("--insr-cold-start", action="store_true", help="re-draw the weights every step (no warm start)")
    g.add_argument("--insr-resume", type=Path, default=None, help="continue from a saved state.json")
    g.add_argument(
        "--insr-param", action="append", default=[], metavar="NAME=VALUE",
        help="set a problem parameter, e.g. viscosity=0.05 (taylor_green), speed=0.5 (advection), youngs=1e4 (elasticity)",
    )
    g.add_argument("--insr-animation", default="gif", choices=("gif", "mp4"), help="animation format")


def solver_settings(problem: InsrProblem) -> tuple[StepperConfig, SirenConfig]:
    """CPU-sized defaults per problem (the paper trains bigger networks for more iterations on a GPU)."""
    if isinstance(problem, AdvectionProblem):
        return StepperConfig(rule="midpoint", lr=3e-4, max_iters=400), SirenConfig(width=32, n_hidden_layers=2)
    if isinstance(problem, TaylorGreenProblem):
        # the periodic input (cos, sin) already spans one period: a low first-layer frequency fits the smooth vortex
        return StepperConfig(rule="midpoint", lr=1e-3, max_iters=200, init_iters=1000), SirenConfig(
            width=32, n_hidden_layers=2, first_omega_0=5.0
        )
    # the Monte Carlo estimate of the incremental potential changes sign and is noisy, so the relative
    # stopping test fires too early: elasticity runs a fixed budget per step
    return StepperConfig(rule="implicit_euler", lr=3e-4, max_iters=300, min_iters=300, init_iters=300), SirenConfig(
        width=32, n_hidden_layers=3
    )


def _set_parameters(problem: InsrProblem, assignments: list[str]) -> None:
    """Apply ``NAME=VALUE`` assignments to the problem's numeric dataclass fields."""
    fields = {f.name: f for f in dataclasses.fields(problem) if f.name != "box"}
    for item in assignments:
        name, _, value = item.partition("=")
        if name not in fields:
            raise OmnifieldError(f"--insr-param {item!r}: unknown parameter; {type(problem).__name__} has: {', '.join(fields)}")
        kind = type(getattr(problem, name))
        try:
            setattr(problem, name, kind(value))
        except ValueError:
            raise OmnifieldError(f"--insr-param {item!r}: {value!r} is not a valid {kind.__name__}") from None


def field_backend(name: str, n_dims: int, width: int, n_hidden_layers: int) -> tuple[Any, Any]:
    """``(encoding config or None, decoder config)`` of backend ``name`` for a ``n_dims``-D state whose
    decoder has ``width`` x ``n_hidden_layers`` (``none`` returns ``(None, None)``: keep the SIREN)."""
    if name not in ENCODINGS:
        raise OmnifieldError(f"--method: unknown field {name!r}; choose from {', '.join(ENCODINGS)}")
    if name == "none":
        return None, None
    mlp = MLPConfig(width=width, n_hidden_layers=n_hidden_layers, activation="tanh", implementation="omnifield")
    if name == "cam":
        return None, dataclasses.replace(default_encoding_config("cam", n_dims), base=mlp, coord_dims=n_dims)
    return default_encoding_config(name, n_dims), mlp


def configure(problem_name: str, args: argparse.Namespace) -> InsrSettings:
    """The :class:`InsrSettings` of ``omnifield pde solve --solver insr`` options (then ``--set KEY=VALUE``)."""
    state = Path(args.out) / STATE
    if args.resume and not state.is_file():
        raise OmnifieldError(f"{state}: no INSR state to resume (solve without --resume first)")
    cfg = InsrSettings(
        time_steps=args.insr_time_steps, dt=args.insr_dt, rule=args.insr_rule, field=args.field or "none",
        width=args.insr_width, layers=args.insr_layers, lr=args.insr_lr, samples=args.insr_samples,
        init_iters=args.insr_init_iters, steps=args.steps, cold_start=args.insr_cold_start,
        params=tuple(args.insr_param), animation=args.insr_animation, seed=args.seed, minutes=args.minutes or 0.0,
        progress=not args.quiet, resume=args.resume,
        resume_from=str(args.insr_resume) if args.insr_resume is not None else None,
    )
    for assignment in args.set or ():
        cfg = override_config(cfg, assignment, "insr")
    cfg.check()
    return cfg


def _configure(problem: InsrProblem, s: InsrSettings) -> tuple[StepperConfig, Any, Any]:
    """The stepper config, decoder and encoding of a fresh run (the problem's defaults, then ``s``)."""
    _set_parameters(problem, list(s.params))
    cfg, decoder = solver_settings(problem)
    problem.dt = s.dt or problem.dt
    problem.n_steps = s.time_steps or problem.n_steps
    cfg.rule = s.rule or cfg.rule
    cfg.max_iters = s.steps or cfg.max_iters
    cfg.n_samples = s.samples or cfg.n_samples
    cfg.init_iters = s.init_iters or cfg.init_iters
    cfg.lr = s.lr or cfg.lr
    cfg.seed = s.seed
    cfg.warm_start = not s.cold_start
    decoder.width = s.width or decoder.width
    decoder.n_hidden_layers = s.layers or decoder.n_hidden_layers
    encoding, backend_decoder = field_backend(s.field, problem.dim, decoder.width, decoder.n_hidden_layers)
    cfg.grid_lr_scale = ENCODING_LR_SCALE.get(s.field, 1.0)
    return cfg, backend_decoder or decoder, encoding


def simulate(
    stepper: InsrStepper,
    comparison: Comparison,
    n_steps: int,
    progress: bool = True,
    checkpoint: Path | None = None,
    minutes: float = 0.0,
    checkpoint_every_s: float = 0.0,
    state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> dict:
    """Run the stepper to step ``n_steps`` (or for ``minutes``) under the engine, one engine step per time
    step; ``{"frames": {step: [M, C]}, "wall_s", "iters"}``.

    ``checkpoint`` (``PATH.json``) receives the checkpoints and ``log.jsonl`` goes beside it; ``state`` (a
    checkpoint's ``(tensors, meta)``) continues that run. A run resumed from a state without frames (saved
    by :meth:`InsrStepper.save`) has frames from the step it resumed at onwards.
    """

    def observe(s: InsrStepper) -> torch.Tensor:
        return s.problem.solution(s.fields, comparison.points)

    task = InsrTask(stepper, checkpoint, observe)
    if checkpoint is not None:  # what a killed save left beside the state files
        for suffix in (".safetensors", ".json"):
            remove_stale_temporaries(checkpoint.with_suffix(suffix))
    log_path = checkpoint.parent / "log.jsonl" if checkpoint is not None else None
    engine = task.engine(n_steps, progress, minutes, checkpoint_every_s, log_path)
    if state is not None and "elapsed" in state[1]:
        engine.restore(*state, where=str(checkpoint or "INSR state"))
    elif state is not None:  # a state of InsrStepper.save: no engine entries
        task.restore(*state)
        engine.step = stepper.step_index
    start = time.perf_counter()
    fresh = not stepper.initialised
    if fresh:
        stepper.initialise()
    task.record_frame()
    if fresh:
        engine.save()  # the initial fit is a checkpoint
    engine.run()
    wall = sum(r["wall_s"] for r in stepper.log) if stepper.log else time.perf_counter() - start
    iters = [sum(s["iters"] for s in r["stages"].values()) for r in stepper.log[1:]]
    return {"frames": {k: v.numpy() for k, v in task.frames.items()}, "wall_s": wall, "iters": iters}


def run(problem_name: str, cfg: InsrSettings, out_dir: Path) -> dict:
    """The ``insr`` solver of ``omnifield pde solve``: step ``problem_name`` as ``cfg`` says in ``out_dir``."""
    cfg.check()
    out_dir = Path(out_dir)
    source = out_dir / STATE if cfg.resume else Path(cfg.resume_from) if cfg.resume_from else None
    state = None
    if source is not None:
        state = InsrStepper.read(source)
        stepper = InsrStepper.from_meta(state[1], str(source))
        problem = stepper.problem
        if type(problem) is not type(registry.get_problem(problem_name)):
            raise OmnifieldError(f"{source}: the saved state is not a {problem_name!r} run")
        if cfg.time_steps is not None:
            problem.n_steps = cfg.time_steps
    else:
        problem = registry.get_problem(problem_name)
        if not isinstance(problem, InsrProblem):
            raise OmnifieldError(f"problem {problem_name!r} is not time-stepped; --solver insr solves: {', '.join(INSR_PROBLEMS)}")
        stepper = InsrStepper(problem, *_configure(problem, cfg))
        (out_dir / "log.jsonl").unlink(missing_ok=True)  # a fresh run replaces the folder's log
    torch.manual_seed(stepper.cfg.seed)
    n_steps = problem.n_steps
    floats = stepper.state_bytes() // 4
    comparison = compare(problem, floats, n_steps)
    result = simulate(stepper, comparison, n_steps, progress=cfg.progress, checkpoint=out_dir / STATE,
                      minutes=cfg.minutes, checkpoint_every_s=cfg.checkpoint_every_s, state=state)
    steps = sorted(result["frames"])
    times = problem.dt * np.array(steps, dtype=np.float64)
    truth = comparison.solutions[comparison.truth]
    errors = {"insr": np.array([relative_l2(result["frames"][s], truth[s]) for s in steps])}
    for name, sol in comparison.solutions.items():
        if name != comparison.truth:
            errors[name] = np.array([relative_l2(sol[s], truth[s]) for s in steps])
    frames = {"insr": np.stack([result["frames"][s] for s in steps])}
    frames.update({name: sol[steps] for name, sol in comparison.solutions.items()})
    anim = out_dir / f"animation.{cfg.animation}"
    write_animation(anim, comparison.points.numpy(), frames, times)
    write_error_plot(out_dir / "error_over_time.png", times, errors, f"relative L2 error vs {comparison.truth} (absolute where it is 0)")
    metrics = {
        "rel_l2": float(errors["insr"][-1]),
        "time": float(times[-1]),
        "state_bytes": stepper.state_bytes(),
        "wall_s": result["wall_s"],
        "mean_iters_per_step": float(np.mean(result["iters"])) if result["iters"] else 0.0,
        **{f"rel_l2_{name}": float(err[-1]) for name, err in errors.items() if name != "insr"},
        **{f"state_bytes_{name}": b for name, b in comparison.state_bytes.items()},
    }
    write_text_atomic(out_dir / "metrics.json", json.dumps(
        {**metrics, "errors": {k: v.tolist() for k, v in errors.items()}, "times": times.tolist()}, indent=1))
    return metrics
