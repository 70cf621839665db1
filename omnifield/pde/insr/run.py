"""``omnifield pde solve PROBLEM --solver insr``: step a problem, compare with its references, write pictures.

Outputs in the run folder: ``state.safetensors``/``state.json`` (saved after
every step; ``--insr-resume`` continues from it), ``animation.gif``,
``error_over_time.png``, ``metrics.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnifield.errors import OmnifieldError
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.sine_mlp import SirenConfig
from omnifield.io.atomic import remove_stale_temporaries
from omnifield.pde import registry
from omnifield.pde.field import ENCODING_LR_SCALE, ENCODINGS, default_encoding_config
from omnifield.pde.insr.advection import AdvectionProblem
from omnifield.pde.insr.compare import Comparison, compare, relative_l2
from omnifield.pde.insr.plots import write_animation, write_error_plot
from omnifield.pde.insr.problem import InsrProblem
from omnifield.pde.insr.stepper import InsrStepper, StepperConfig
from omnifield.pde.insr.taylor_green import TaylorGreenProblem

INSR_PROBLEMS = ("advection", "taylor_green", "elasticity")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """INSR options of ``omnifield pde solve`` (``--steps`` is the per-step iteration cap)."""
    g = parser.add_argument_group("INSR (--solver insr)")
    g.add_argument("--insr-time-steps", type=int, default=None, help="number of time steps (problem default)")
    g.add_argument("--insr-dt", type=float, default=None, help="time step (problem default)")
    g.add_argument("--insr-rule", default=None, help="midpoint or implicit_euler (default: midpoint where supported)")
    g.add_argument("--insr-field", default="none", metavar="NAME",
                   help=f"backend of the state: {', '.join(ENCODINGS)} (none: SIREN on the coordinates; cam: a tanh "
                        "MLP on the coordinates with coordinate-aware modulation grids; otherwise that encoding, "
                        "PDE-sized, feeding a tanh MLP; grids train at 10x --insr-lr)")
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
        raise OmnifieldError(f"--insr-field: unknown field {name!r}; choose from {', '.join(ENCODINGS)}")
    if name == "none":
        return None, None
    mlp = MLPConfig(width=width, n_hidden_layers=n_hidden_layers, activation="tanh", implementation="omnifield")
    if name == "cam":
        return None, dataclasses.replace(default_encoding_config("cam", n_dims), base=mlp, coord_dims=n_dims)
    return default_encoding_config(name, n_dims), mlp


def _configure(problem: InsrProblem, args: argparse.Namespace) -> tuple[StepperConfig, Any, Any]:
    _set_parameters(problem, args.insr_param)
    cfg, decoder = solver_settings(problem)
    if args.insr_dt is not None:
        if args.insr_dt <= 0:
            raise OmnifieldError(f"--insr-dt must be > 0, got {args.insr_dt}")
        problem.dt = args.insr_dt
    if args.insr_time_steps is not None:
        if args.insr_time_steps < 1:
            raise OmnifieldError(f"--insr-time-steps must be >= 1, got {args.insr_time_steps}")
        problem.n_steps = args.insr_time_steps
    for option, value in (("--steps", args.steps), ("--insr-samples", args.insr_samples), ("--insr-width", args.insr_width), ("--insr-layers", args.insr_layers), ("--insr-init-iters", args.insr_init_iters)):
        if value is not None and value < 1:
            raise OmnifieldError(f"{option} must be >= 1, got {value}")
    cfg.rule = args.insr_rule or cfg.rule
    cfg.max_iters = args.steps or cfg.max_iters
    cfg.n_samples = args.insr_samples or cfg.n_samples
    cfg.init_iters = args.insr_init_iters or cfg.init_iters
    cfg.lr = args.insr_lr or cfg.lr
    cfg.seed = args.seed
    cfg.warm_start = not args.insr_cold_start
    decoder.width = args.insr_width or decoder.width
    decoder.n_hidden_layers = args.insr_layers or decoder.n_hidden_layers
    encoding, backend_decoder = field_backend(args.insr_field, problem.dim, decoder.width, decoder.n_hidden_layers)
    cfg.grid_lr_scale = ENCODING_LR_SCALE.get(args.insr_field, 1.0)
    return cfg, backend_decoder or decoder, encoding


def simulate(
    stepper: InsrStepper,
    comparison: Comparison,
    n_steps: int,
    progress: bool = True,
    checkpoint: Path | None = None,
) -> dict:
    """Run the stepper to step ``n_steps``; ``{"frames": [n_steps + 1, M, C], "wall_s", "iters"}``.

    A resumed run has frames from the step it resumed at onwards.
    """
    frames: dict[int, np.ndarray] = {}

    def grab(s: InsrStepper, record: dict | None = None) -> None:
        with torch.no_grad():
            frames[s.step_index] = s.problem.solution(s.fields, comparison.points).numpy()
        if checkpoint is not None:
            s.save(checkpoint)

    if checkpoint is not None:  # what a killed save left beside the state files
        for suffix in (".safetensors", ".json"):
            remove_stale_temporaries(checkpoint.with_suffix(suffix))
    start = time.perf_counter()
    if not stepper.initialised:
        stepper.initialise()
    grab(stepper)
    stepper.run(max(0, n_steps - stepper.step_index), progress=progress, on_step=grab)
    wall = sum(r["wall_s"] for r in stepper.log) if stepper.log else time.perf_counter() - start
    iters = [sum(s["iters"] for s in r["stages"].values()) for r in stepper.log[1:]]
    return {"frames": frames, "wall_s": wall, "iters": iters}


def run(problem_name: str, args: argparse.Namespace, out_dir: Path) -> dict:
    """The ``insr`` solver of ``omnifield pde solve``."""
    if args.insr_resume is not None:
        stepper = InsrStepper.load(args.insr_resume)
        problem = stepper.problem
        if type(problem) is not type(registry.get_problem(problem_name)):
            raise OmnifieldError(f"{args.insr_resume}: the saved state is not a {problem_name!r} run")
        if args.insr_time_steps is not None:
            problem.n_steps = args.insr_time_steps
    else:
        problem = registry.get_problem(problem_name)
        if not isinstance(problem, InsrProblem):
            raise OmnifieldError(f"problem {problem_name!r} is not time-stepped; --solver insr solves: {', '.join(INSR_PROBLEMS)}")
        cfg, decoder, encoding = _configure(problem, args)
        stepper = InsrStepper(problem, cfg, decoder, encoding)
    torch.manual_seed(stepper.cfg.seed)
    n_steps = problem.n_steps
    floats = stepper.state_bytes() // 4
    comparison = compare(problem, floats, n_steps)
    result = simulate(stepper, comparison, n_steps, progress=not args.quiet, checkpoint=out_dir / "state.json")
    steps = sorted(result["frames"])
    times = problem.dt * np.array(steps, dtype=np.float64)
    truth = comparison.solutions[comparison.truth]
    errors = {"insr": np.array([relative_l2(result["frames"][s], truth[s]) for s in steps])}
    for name, sol in comparison.solutions.items():
        if name != comparison.truth:
            errors[name] = np.array([relative_l2(sol[s], truth[s]) for s in steps])
    frames = {"insr": np.stack([result["frames"][s] for s in steps])}
    frames.update({name: sol[steps] for name, sol in comparison.solutions.items()})
    anim = out_dir / f"animation.{args.insr_animation}"
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
    tmp = out_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps({**metrics, "errors": {k: v.tolist() for k, v in errors.items()}, "times": times.tolist()}, indent=1))
    os.replace(tmp, out_dir / "metrics.json")
    return metrics

