"""PDE solving with neural fields.

- :mod:`omnifield.pde.problem`: domains, residuals, conditions, reference grids, relative L2.
- :mod:`omnifield.pde.problems`: Burgers, Allen–Cahn, Helmholtz, L-shape Poisson, heat, Kovasznay.
- :mod:`omnifield.pde.reference`: classical reference solvers (Fourier spectral ETDRK4, ...).
- :mod:`omnifield.pde.solvers`: PINN, causal PINN, hard constraints, mixture-of-experts, PIG.
- :mod:`omnifield.pde.registry`: problems and solvers by name; ``omnifield pde`` dispatches there.
"""
