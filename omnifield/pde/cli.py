"""``omnifield pde list`` and ``omnifield pde solve PROBLEM --solver SOLVER``.

Dispatches through :mod:`omnifield.pde.registry`; the modules in its
``PLUGIN_MODULES`` register their problems and solvers when imported. The
command only builds the solver's typed config (the solver's ``configure`` hook:
defaults, options, ``--set KEY=VALUE``) and runs it in the output folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omnifield.cli_options import declare_applicability, refuse_inapplicable
from omnifield.io.run_folder import claim_output
from omnifield.pde import registry
from omnifield.pde.field import ENCODINGS
from omnifield.pde.solvers.settings import applicability, check_numbers


def register(subparsers) -> None:
    """Add the ``pde`` sub-command with ``list`` and ``solve``."""
    registry.load_plugins()
    pde = subparsers.add_parser("pde", help="solve PDEs with neural fields (PINN, causal PINN, hard constraints, PIG)")
    sub = pde.add_subparsers(dest="pde_command", metavar="PDE_COMMAND")
    pde.set_defaults(func=lambda args: (pde.print_help(), 2)[1])

    lst = sub.add_parser("list", help="list problems and solvers")
    lst.set_defaults(func=_list)

    solve = sub.add_parser("solve", help="solve a problem and write plots, loss curves and the solution grid")
    solve.add_argument("problem", help=f"problem name ({', '.join(registry.problem_names())})")
    solve.add_argument("--solver", default="pinn", help=f"solver name ({', '.join(registry.solver_names())})")
    solve.add_argument("--steps", type=int, default=None, help="optimiser steps (solver default if omitted)")
    solve.add_argument("--seed", type=int, default=0, help="random seed (CPU runs are repeatable)")
    solve.add_argument("--out", type=Path, default=None, help="output folder (default runs/pde/PROBLEM_SOLVER)")
    solve.add_argument("--quiet", action="store_true", help="no progress bar")
    solve.add_argument("--minutes", type=float, default=None,
                       help="training time budget in minutes, besides the steps (0 or omitted: none); the run stops "
                            "at whichever limit comes first")
    solve.add_argument("--resume", action="store_true", help="continue the solve in --out from its checkpoint")
    solve.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="set any field of the solver's config, e.g. lbfgs_block=20 or checkpoint_every_s=10 "
                            "(repeatable)")
    _add_solver_options(solve)
    solve.set_defaults(func=_solve)


def _add_solver_options(solve: argparse.ArgumentParser) -> None:
    """Each solver's options (a hook shared by several solvers adds its options once), declared to apply to
    the solvers whose hook added them (narrowed to single solvers or field backends where the settings say)."""
    hooks: dict[int, tuple] = {}
    for name, hook in registry.solver_argument_hooks().items():
        hooks.setdefault(id(hook), (hook, set()))[1].add(name)
    by_solver: dict[str, frozenset[str]] = {}
    for add_arguments, solvers in hooks.values():
        before = set(solve._actions)
        add_arguments(solve)
        for action in solve._actions:  # a dest two hooks write (INSR's old --insr-field is --method) joins both
            if action not in before:
                by_solver[action.dest] = by_solver.get(action.dest, frozenset()) | solvers
    narrower, by_method = applicability()
    by_solver.update({dest: by_solver[dest] & solvers for dest, solvers in narrower.items() if dest in by_solver})
    declare_applicability(solve, by_solver, "--solver", choices=registry.solver_names())
    declare_applicability(solve, by_method, "--method", choices=ENCODINGS)


def parse_solve_args(argv: list[str]) -> argparse.Namespace:
    """Parse ``["PROBLEM", "--solver", ...]`` exactly as ``omnifield pde solve`` would."""
    parser = argparse.ArgumentParser(prog="omnifield")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["pde", "solve", *argv])


def _list(args: argparse.Namespace) -> int:
    print("problems: " + ", ".join(registry.problem_names()))
    print("solvers:  " + ", ".join(registry.solver_names()))
    return 0


def _solve(args: argparse.Namespace) -> int:
    registry.get_problem(args.problem)  # validate the name and options before any work
    run = registry.get_solver(args.solver)
    refuse_inapplicable(args, args.solver, "--solver")
    check_numbers(vars(args))
    args.out = args.out or Path("runs") / "pde" / f"{args.problem}_{args.solver}"
    claim_output(args.out, "PDE solution", continues=True)
    config = registry.solver_configure(args.solver)(args.problem, args)
    method = getattr(getattr(config, "settings", None), "field", None)  # the settled backend (a solver's default)
    if method is not None:
        refuse_inapplicable(args, method, "--method")
    args.out.mkdir(parents=True, exist_ok=True)
    metrics = run(args.problem, config, args.out)
    print(json.dumps({"problem": args.problem, "solver": args.solver, **metrics}, indent=None))
    return 0
