"""Classical reference solvers (numpy/scipy) that the neural solutions are measured against."""
