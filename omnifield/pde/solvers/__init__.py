"""PINN-family solvers: ``pinn`` (soft conditions), ``hard`` (exact output transform), ``causal``
(causal time weighting), ``moe`` (mixture-of-experts hard constraint) and ``pig`` (Physics-Informed
Gaussians). Importing this package registers them."""

from omnifield.pde.registry import register_solver
from omnifield.pde.solvers.run import SOLVERS, run_solver, solve
from omnifield.pde.solvers.settings import add_solver_arguments

for _name in SOLVERS:
    register_solver(_name, run_solver(_name), add_arguments=add_solver_arguments)

__all__ = ["SOLVERS", "run_solver", "solve"]
