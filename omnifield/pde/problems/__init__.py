"""The problem library; importing it registers every problem by name."""

from omnifield.pde.problems.allen_cahn import AllenCahn
from omnifield.pde.problems.burgers import Burgers
from omnifield.pde.problems.heat import Heat2D
from omnifield.pde.problems.helmholtz import Helmholtz2D
from omnifield.pde.problems.kovasznay import Kovasznay
from omnifield.pde.problems.poisson import PoissonLShape
from omnifield.pde.registry import register_problem

PROBLEMS = {
    "burgers": Burgers,
    "allen_cahn": AllenCahn,
    "helmholtz": Helmholtz2D,
    "poisson_lshape": PoissonLShape,
    "heat": Heat2D,
    "kovasznay": Kovasznay,
}
for _name, _cls in PROBLEMS.items():
    register_problem(_name, _cls)

__all__ = ["AllenCahn", "Burgers", "Heat2D", "Helmholtz2D", "Kovasznay", "PROBLEMS", "PoissonLShape"]
