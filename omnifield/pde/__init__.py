"""PDE solving with neural fields.

- :mod:`omnifield.pde.problem`: domains, residuals, conditions, reference grids, relative L2.
- :mod:`omnifield.pde.problems`: Burgers, Allen–Cahn, Helmholtz, L-shape Poisson, heat, Kovasznay.
- :mod:`omnifield.pde.reference`: classical reference solvers (Fourier spectral ETDRK4, ...).
- :mod:`omnifield.pde.solvers`: PINN, causal PINN, hard constraints, mixture-of-experts, PIG.
- :mod:`omnifield.pde.registry`: problems and solvers by name; ``omnifield pde`` dispatches there.
"""

from omnifield import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "derivatives": ["gradient", "laplacian"],
    "field": ["PDEField", "UnknownConfig"],
    "output": ["predict_on_grid", "write_outputs"],
    "problem": ["Box", "Condition", "Dirichlet", "Neumann", "Periodic", "Problem", "ReferenceGrid", "relative_l2"],
    "registry": ["get_problem", "get_solver", "problem_names", "register_problem", "register_solver",
                 "solver_names"],
})
