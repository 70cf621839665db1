"""Solver settings: defaults per solver, tuned overrides per (problem, solver), then options given.

:class:`SolverSettings` is a registered config. Its fields carry their command-line help in their
metadata, and :func:`add_solver_arguments` turns every field into an option (``n_interior`` ->
``--n-interior``; a bool becomes ``--double/--no-double``; ``option`` and ``old_names`` in the metadata
rename it: ``field`` is ``--method``, with ``--field`` its old name), so a new setting is one field. Fields
marked ``flag=False`` are set through the command's own options (``--steps``, ``--minutes``) or
``--set KEY=VALUE`` only. ``solvers`` / ``methods`` in the metadata name the only solvers / field backends
a setting applies to (:func:`applicability`). :func:`settings_for` resolves the three layers of values.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from omnifield.cli_options import add_new_and_old
from omnifield.config import register_config
from omnifield.config_overrides import apply_override
from omnifield.errors import OmnifieldError
from omnifield.pde.field import ENCODINGS
from omnifield.pde.solvers.loss import SAMPLINGS


def _opt(default: Any, help: str, **metadata: Any) -> Any:  # noqa: A002 - argparse's word
    """A settings field with its command-line ``help`` (and optional ``choices``, ``metavar``, ``flag``,
    ``option``, ``old_names``, ``solvers``, ``methods``)."""
    return field(default=default, metadata={"help": help, **metadata})


@register_config("pde_solver")
@dataclass
class SolverSettings:
    """Everything a solve needs besides the problem (sizes chosen for a 2-core CPU)."""

    field: str = _opt("none", f"backend of the unknown: {', '.join(ENCODINGS)} (none = plain tanh MLP on coordinates, "
                              "with --solver insr a SIREN; cam = that MLP with coordinate-aware modulation grids; "
                              "otherwise that encoding, PDE-sized, feeding a tanh MLP)", metavar="NAME",
                 option="--method", old_names=("--field",), solvers=("pinn", "hard", "causal", "moe", "pig", "insr"))
    arch: str = _opt("mlp", "decoder: plain tanh MLP or the gated modified MLP of Wang et al. (causal PINN)",
                     choices=("mlp", "modified"))
    width: int = _opt(20, "MLP width")
    depth: int = _opt(4, "MLP hidden layers")
    n_harmonics: int = _opt(1, "periodic embedding harmonics (--method none only)", methods=("none",))
    lr: float = _opt(1e-3, "Adam learning rate (decays exponentially to --lr-final)")
    encoding_lr: float | None = _opt(None, "Adam learning rate of the grid/basis parameters (default: --lr x 10 for "
                                           "triplane, neurbf, cam; --lr otherwise); decays with --lr")
    lr_final: float = _opt(1e-4, "Adam learning rate at the last step")
    steps: int = _opt(2000, "Adam steps", flag=False)  # the command's --steps
    lbfgs_steps: int = _opt(500, "L-BFGS iterations after Adam (0: none)")
    n_interior: int = _opt(2000, "collocation points per batch")
    n_condition: int = _opt(200, "points per initial/boundary condition per batch")
    sampling: str = _opt("uniform", "collocation points: independent uniform, or scrambled Sobol sets (even cover)",
                         choices=SAMPLINGS)
    resample_every: int = _opt(100, "Adam steps between collocation resamplings")
    adaptive_k: float = _opt(0.0, "residual-adaptive sampling (RAD) exponent k: density ~ |r|^k/mean + c (0 = uniform)")
    adaptive_c: float = _opt(1.0, "RAD's uniform share c (default 1)")
    condition_weight: float = _opt(1.0, "weight of the soft initial/boundary losses")
    chunks: int = _opt(32, "causal: number of time chunks", solvers=("causal",))
    eps: str = _opt("0.01,0.1,1,10,100", "causal: comma-separated eps schedule, e.g. 0.01,0.1,1,10,100",
                    solvers=("causal",))
    experts: int = _opt(4, "moe: number of experts (slabs along the first axis)", solvers=("moe",))
    basis: int = _opt(64, "moe: basis functions per expert", solvers=("moe",))
    constraint_points: int = _opt(48, "moe: constraint points per expert and output", solvers=("moe",))
    n_gaussians: int = _opt(400, "--method gaussian_embedding (pig's default): number of Gaussians",
                            methods=("gaussian_embedding",))
    gaussian_sigma: float = _opt(0.05, "--method gaussian_embedding: initial Gaussian standard deviation (unit cube)",
                                 methods=("gaussian_embedding",))
    gaussian_features: int = _opt(4, "--method gaussian_embedding: features per Gaussian",
                                  methods=("gaussian_embedding",))
    gaussian_neighbors: int = _opt(0, "--method gaussian_embedding: nearest Gaussians summed per point (0 = all; "
                                      "K must cover ~3 sigma or the sum jumps)", methods=("gaussian_embedding",))
    double: bool = _opt(False, "float64 training")
    lbfgs_double: bool = _opt(False, "switch to float64 for the L-BFGS phase (Adam stays in the --double/float32 "
                                     "precision)")
    lbfgs_points: int = _opt(0, "collocation points of the fixed L-BFGS batch (0: --n-interior)")
    lbfgs_resample_every: int = _opt(0, "L-BFGS iterations between fresh collocation batches (0: one batch "
                                        "throughout)")
    lbfgs_block: int = _opt(50, "L-BFGS iterations per block: the loss is checked (a block that turns it non-finite "
                                "is undone and ends the phase), causal weights are renewed and the bar moves once "
                                "per block")
    grad_clip: float = _opt(0.0, "clip the norm of the Adam gradient (0 = off)")
    minutes: float = _opt(0.0, "time budget in minutes (0 = none)", flag=False)  # the command's --minutes
    checkpoint_every_s: float = _opt(60.0, "seconds between checkpoints (also written at the end and on Ctrl-C)",
                                     flag=False)
    log_every: int = _opt(10, "steps between log.jsonl lines", flag=False)

    def check(self) -> None:
        """Refuse an unknown field backend and numbers out of range (see :func:`check_numbers`)."""
        if self.field not in ENCODINGS:
            raise OmnifieldError(f"--method: unknown field backend {self.field!r}; choose from {', '.join(ENCODINGS)}")
        check_numbers(dataclasses.asdict(self), zero_allowed=ZERO_ALLOWED | {"steps"})  # steps=0: L-BFGS only


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

# Numeric options that may be 0 (0 = none / the default); every other numeric option must be > 0.
ZERO_ALLOWED = {"seed", "lbfgs_steps", "lbfgs_points", "lbfgs_resample_every", "condition_weight", "adaptive_k",
                "adaptive_c", "grad_clip", "minutes", "checkpoint_every_s", "gaussian_neighbors"}


def check_numbers(values: Mapping[str, Any], where: str = "pde solve", zero_allowed: set[str] = ZERO_ALLOWED) -> None:
    """Refuse a number out of range (``steps=-5``, ``lr=0``, NaN): > 0, or >= 0 for ``zero_allowed``.

    ``values`` maps option names (``n_interior``) to values; others than numbers (and ``seed``) pass."""
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or name == "seed":
            continue
        flag = f"--{name.replace('_', '-')}"
        if not math.isfinite(value):
            raise OmnifieldError(f"{where}: {flag} must be a finite number, got {value}")
        if value < 0 or (value == 0 and name not in zero_allowed):
            bound = ">= 0" if name in zero_allowed else "> 0"
            raise OmnifieldError(f"{where}: {flag} must be {bound}, got {value}")


def _flag_fields() -> list[dataclasses.Field]:
    return [f for f in fields(SolverSettings) if f.metadata.get("flag", True)]


def _value_type(cls: type, name: str) -> type:
    """The declared type of field ``name`` of dataclass ``cls`` (``float`` for ``float | None``)."""
    hint = typing.get_type_hints(cls)[name]
    return next((t for t in typing.get_args(hint) if t is not type(None)), hint)


def add_solver_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`SolverSettings` field (all optional; unset ones keep the tuned defaults)."""
    g = parser.add_argument_group("PINN / causal / hard / moe / pig options")
    for f in _flag_fields():
        kind = _value_type(SolverSettings, f.name)
        extra = {k: f.metadata[k] for k in ("choices", "metavar") if k in f.metadata}
        if kind is bool:
            extra["action"] = argparse.BooleanOptionalAction
        else:
            extra["type"] = kind
        option = f.metadata.get("option", f"--{f.name.replace('_', '-')}")
        add_new_and_old(g, option, f.metadata.get("old_names", ()), dest=f.name, default=None,
                        help=f.metadata["help"], **extra)


def applicability() -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """``(dest -> solvers, dest -> field backends)``: the options of :func:`add_solver_arguments` that apply to
    some solvers (of this family) or field backends only."""
    flagged = _flag_fields()
    solvers = {f.name: frozenset(f.metadata.get("solvers", SOLVER_DEFAULTS)) for f in flagged}
    methods = {f.name: frozenset(f.metadata["methods"]) for f in flagged if "methods" in f.metadata}
    return solvers, methods


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`SolverSettings` values given as options (those of :func:`add_solver_arguments`, ``--steps``
    and ``--minutes``; ``None`` means not given)."""
    names = [f.name for f in fields(SolverSettings)]
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def override_config(cfg: Any, assignment: str, root: str = "settings") -> Any:
    """``cfg`` with ``--set KEY=VALUE`` applied (:func:`~omnifield.config_overrides.apply_override`); a field
    whose value is ``None`` (unset) parses as its declared type."""
    name, sep, text = assignment.partition("=")
    name = name.strip()
    if sep and name in {f.name for f in fields(cfg)} and getattr(cfg, name) is None:
        kind = _value_type(type(cfg), name)
        try:
            value = kind(text)
        except ValueError:
            raise OmnifieldError(f"--set {name}: expected a {kind.__name__}, got {text!r}") from None
        return replace(cfg, **{name: value})
    return apply_override(cfg, assignment, root)


def settings_for(solver: str, problem: str, given: Mapping[str, Any] | None = None,
                 overrides: tuple[str, ...] | list[str] = (), base: SolverSettings | None = None) -> SolverSettings:
    """Defaults of ``solver``, then the tuned ``(problem, solver)`` overrides (or ``base``, e.g. a resumed run's
    settings), then the ``given`` options, then ``--set`` ``overrides``; checked."""
    if base is None:
        base = replace(SolverSettings(), **SOLVER_DEFAULTS.get(solver, {}))
        base = replace(base, **PROBLEM_DEFAULTS.get((problem, solver), {}))
    s = replace(base, **dict(given or {}))
    for assignment in overrides:
        s = override_config(s, assignment)
    s.check()
    return s
