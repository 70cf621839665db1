"""Problems and solvers by name, shared by every PDE solver and the ``omnifield pde`` command.

A problem factory takes no arguments and returns a problem object.
A solver is ``run(problem_name, config, out_dir) -> metrics`` where ``config`` is
the solver's registered config dataclass and ``metrics`` a dict of JSON-able
numbers (``rel_l2`` at least). For ``omnifield pde solve`` a solver also passes
``add_arguments(parser)`` (its command-line options) and ``configure(problem_name,
args) -> config``, which builds its config from the parsed options.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from omnifield.config import import_plugins
from omnifield.errors import OmnifieldError

# Modules that call register_problem()/register_solver() at import time.
PLUGIN_MODULES = [
    "omnifield.pde.problems",
    "omnifield.pde.solvers",
    "omnifield.pde.insr",
]

SolverRun = Callable[[str, Any, Path], dict]

_PROBLEMS: dict[str, Callable[[], Any]] = {}
_SOLVERS: dict[str, SolverRun] = {}
_SOLVER_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}
_SOLVER_CONFIGURE: dict[str, Callable[[str, argparse.Namespace], Any]] = {}


def load_plugins() -> None:
    """Import every plugin module that exists so that its problems and solvers register."""
    import_plugins(PLUGIN_MODULES)


def register_problem(name: str, factory: Callable[[], Any]) -> None:
    """Register ``factory()`` (returns a fresh problem) under ``name``."""
    _PROBLEMS[name] = factory


def register_solver(
    name: str,
    run: SolverRun,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    configure: Callable[[str, argparse.Namespace], Any] | None = None,
) -> None:
    """Register ``run(problem_name, config, out_dir) -> metrics`` under ``name``, with its command-line hooks."""
    _SOLVERS[name] = run
    if add_arguments is not None:
        _SOLVER_ARGUMENTS[name] = add_arguments
    if configure is not None:
        _SOLVER_CONFIGURE[name] = configure


def problem_names() -> list[str]:
    """Registered problem names, sorted."""
    return sorted(_PROBLEMS)


def solver_names() -> list[str]:
    """Registered solver names, sorted."""
    return sorted(_SOLVERS)


def get_problem(name: str) -> Any:
    """A fresh problem ``name``; :class:`OmnifieldError` naming the choices if unknown."""
    load_plugins()
    if name not in _PROBLEMS:
        raise OmnifieldError(f"unknown PDE problem {name!r}; choose from: {', '.join(problem_names())}")
    return _PROBLEMS[name]()


def get_solver(name: str) -> SolverRun:
    """The run function of solver ``name``; :class:`OmnifieldError` naming the choices if unknown."""
    load_plugins()
    if name not in _SOLVERS:
        raise OmnifieldError(f"unknown PDE solver {name!r}; choose from: {', '.join(solver_names())}")
    return _SOLVERS[name]


def solver_configure(name: str) -> Callable[[str, argparse.Namespace], Any]:
    """``configure(problem_name, args) -> config`` of solver ``name`` (:class:`OmnifieldError` if it has none)."""
    get_solver(name)
    if name not in _SOLVER_CONFIGURE:
        raise OmnifieldError(f"PDE solver {name!r} cannot be configured from the command line")
    return _SOLVER_CONFIGURE[name]


def solver_argument_hooks() -> dict[str, Callable[[argparse.ArgumentParser], None]]:
    """Per-solver ``add_arguments(parser)`` hooks (a copy)."""
    return dict(_SOLVER_ARGUMENTS)
