"""Solver settings: defaults per solver, tuned overrides per (problem, solver), then command-line flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace

from omnifield.errors import OmnifieldError
from omnifield.pde.field import ENCODINGS
from omnifield.pde.solvers.loss import SAMPLINGS


@dataclass
class SolverSettings:
    """Everything a solve needs besides the problem (sizes chosen for a 2-core CPU)."""

    field: str = "none"
    arch: str = "mlp"
    width: int = 20
    depth: int = 4
    n_harmonics: int = 1
    lr: float = 1e-3
    encoding_lr: float | None = None  # None: lr times the backend's ENCODING_LR_SCALE
    lr_final: float = 1e-4
    steps: int = 2000
    lbfgs_steps: int = 500
    n_interior: int = 2000
    n_condition: int = 200
    sampling: str = "uniform"
    resample_every: int = 100
    adaptive_k: float = 0.0
    adaptive_c: float = 1.0
    condition_weight: float = 1.0
    chunks: int = 32
    eps: str = "0.01,0.1,1,10,100"
    experts: int = 4
    basis: int = 64
    constraint_points: int = 48
    n_gaussians: int = 400
    gaussian_sigma: float = 0.05
    gaussian_features: int = 4
    gaussian_neighbors: int = 0
    double: bool = False
    lbfgs_double: bool = False
    lbfgs_points: int = 0
    lbfgs_resample_every: int = 0


SOLVER_DEFAULTS: dict[str, dict] = {
    "pinn": {},
    "hard": {},
    "causal": {"width": 64, "depth": 4, "n_harmonics": 2, "lbfgs_steps": 0, "steps": 3000, "n_interior": 2048},
    "moe": {"width": 32, "depth": 3, "basis": 32, "constraint_points": 24},  # basis <= width + 1 (what the MLP spans)
    "pig": {"field": "gaussian_embedding", "width": 16, "depth": 1, "lr": 1e-2, "lr_final": 1e-3, "double": True},
}

# Sizes that reach the targets on the reference machine (2 CPU cores); flags override them.
_BURGERS = {"width": 32, "depth": 4, "steps": 2000, "lbfgs_steps": 4000, "n_interior": 4000, "double": True}
PROBLEM_DEFAULTS: dict[tuple[str, str], dict] = {
    ("burgers", "hard"): _BURGERS,
    ("burgers", "pinn"): _BURGERS,
    ("poisson_lshape", "moe"): {"steps": 400, "lbfgs_steps": 400},  # 2.9e-3/4.2e-3/2.2e-3 (seeds 0-2), 89-109 s
    # modified MLP; a short Adam phase (float32) to get the causal schedule going, then L-BFGS in float64 on
    # 4096 points, the weights held per block and eps still rising (reaches 100). After 3500 L-BFGS iterations the
    # error still fell 10-20 % per 500 (seed 1: 8.6e-3); 5500 reach 2.77e-3 / 4.46e-3 (seeds 0 / 1) in 720 / 705 s
    ("allen_cahn", "causal"): {"arch": "modified", "width": 48, "depth": 4, "steps": 1500, "n_interior": 2048,
                               "lbfgs_steps": 5500, "lbfgs_double": True, "lbfgs_points": 4096},
    # float64 throughout (closed-form residual jet), long L-BFGS on 2500 Sobol points: 6.68e-5 in 468 s (on uniform
    # random points the residual between them was ~2x that on them, and the error stayed at 1.7-2.1e-4)
    ("helmholtz", "pig"): {"steps": 2000, "lbfgs_steps": 10000, "lr": 5e-3, "lr_final": 5e-4, "n_interior": 1000,
                           "lbfgs_points": 2500, "sampling": "sobol", "n_gaussians": 256, "gaussian_sigma": 0.08,
                           "gaussian_features": 8},
}


def add_solver_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the PINN-family solvers (all optional; unset ones keep the tuned defaults)."""
    g = parser.add_argument_group("PINN / causal / hard / moe / pig options")
    g.add_argument("--field", metavar="NAME",
                   help=f"backend of the unknown: {', '.join(ENCODINGS)} (none = plain tanh MLP on coordinates; "
                        "cam = that MLP with coordinate-aware modulation grids)")
    g.add_argument("--arch", choices=("mlp", "modified"),
                   help="decoder: plain tanh MLP or the gated modified MLP of Wang et al. (causal PINN)")
    g.add_argument("--width", type=int, help="MLP width")
    g.add_argument("--depth", type=int, help="MLP hidden layers")
    g.add_argument("--n-harmonics", type=int, help="periodic embedding harmonics (no encoding only)")
    g.add_argument("--lr", type=float, help="Adam learning rate (decays exponentially to --lr-final)")
    g.add_argument("--encoding-lr", type=float,
                   help="Adam learning rate of the grid/basis parameters (default: --lr x 10 for triplane, neurbf, cam; "
                        "--lr otherwise); decays with --lr")
    g.add_argument("--lr-final", type=float, help="Adam learning rate at the last step")
    g.add_argument("--lbfgs-steps", type=int, help="L-BFGS iterations after Adam (0: none)")
    g.add_argument("--n-interior", type=int, help="collocation points per batch")
    g.add_argument("--n-condition", type=int, help="points per initial/boundary condition per batch")
    g.add_argument("--sampling", choices=SAMPLINGS,
                   help="collocation points: independent uniform, or scrambled Sobol sets (even cover)")
    g.add_argument("--resample-every", type=int, help="Adam steps between collocation resamplings")
    g.add_argument("--adaptive-k", type=float,
                   help="residual-adaptive sampling (RAD) exponent k: density ~ |r|^k/mean + c (0 = uniform)")
    g.add_argument("--adaptive-c", type=float, help="RAD's uniform share c (default 1)")
    g.add_argument("--condition-weight", type=float, help="weight of the soft initial/boundary losses")
    g.add_argument("--chunks", type=int, help="causal: number of time chunks")
    g.add_argument("--eps", type=str, help="causal: comma-separated eps schedule, e.g. 0.01,0.1,1,10,100")
    g.add_argument("--experts", type=int, help="moe: number of experts (slabs along the first axis)")
    g.add_argument("--basis", type=int, help="moe: basis functions per expert")
    g.add_argument("--constraint-points", type=int, help="moe: constraint points per expert and output")
    g.add_argument("--n-gaussians", type=int, help="pig: number of Gaussians")
    g.add_argument("--gaussian-sigma", type=float, help="pig: initial Gaussian standard deviation (unit cube)")
    g.add_argument("--gaussian-features", type=int, help="pig: features per Gaussian")
    g.add_argument("--gaussian-neighbors", type=int,
                   help="pig: nearest Gaussians summed per point (0 = all; K must cover ~3 sigma or the sum jumps)")
    g.add_argument("--double", action=argparse.BooleanOptionalAction, default=None, help="float64 training")
    g.add_argument("--lbfgs-double", action=argparse.BooleanOptionalAction, default=None,
                   help="switch to float64 for the L-BFGS phase (Adam stays in the --double/float32 precision)")
    g.add_argument("--lbfgs-points", type=int, help="collocation points of the fixed L-BFGS batch (0: --n-interior)")
    g.add_argument("--lbfgs-resample-every", type=int,
                   help="L-BFGS iterations between fresh collocation batches (0: one batch throughout)")


def resolve_settings(solver: str, problem: str, args: argparse.Namespace) -> SolverSettings:
    """Defaults of ``solver``, then the tuned ``(problem, solver)`` overrides, then any flag that was given."""
    s = replace(SolverSettings(), **SOLVER_DEFAULTS.get(solver, {}))
    s = replace(s, **PROBLEM_DEFAULTS.get((problem, solver), {}))
    given = {f.name: getattr(args, f.name) for f in fields(SolverSettings) if getattr(args, f.name, None) is not None}
    s = replace(s, **given)
    if s.field not in ENCODINGS:
        raise OmnifieldError(f"--field: unknown field {s.field!r}; choose from {', '.join(ENCODINGS)}")
    return s
