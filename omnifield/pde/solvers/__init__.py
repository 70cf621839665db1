"""PINN-family solvers: ``pinn`` (soft conditions), ``hard`` (exact output transform), ``causal``
(causal time weighting), ``moe`` (mixture-of-experts hard constraint) and ``pig`` (Physics-Informed
Gaussians). Importing this package registers them."""

from omnifield.pde.registry import register_solver
from omnifield.pde.solvers.run import SOLVERS, SolveConfig, configure, run_solver, solve
from omnifield.pde.solvers.settings import SolverSettings, add_solver_arguments

for _name in SOLVERS:
    register_solver(_name, run_solver(_name), add_arguments=add_solver_arguments, configure=configure)

__all__ = ["SOLVERS", "SolveConfig", "SolverSettings", "run_solver", "solve"]
