"""INSR: time-dependent PDEs solved by implicit neural spatial representations (Chen et al., ICML 2023).

Importing this package registers the ``insr`` solver and its problems
(``advection``, ``taylor_green``, ``elasticity``) in :mod:`omnifield.pde.registry`.
"""

from omnifield.pde import registry
from omnifield.pde.insr.advection import AdvectionProblem
from omnifield.pde.insr.elasticity import ElasticityProblem
from omnifield.pde.insr.field import SpatialField, SpatialFieldConfig
from omnifield.pde.insr.problem import InsrProblem, Stage, StageContext
from omnifield.pde.insr.rules import RULES, step_residual
from omnifield.pde.insr.run import InsrSettings, add_arguments, configure, run
from omnifield.pde.insr.stepper import InsrStepper, StepperConfig
from omnifield.pde.insr.taylor_green import TaylorGreenProblem

registry.register_problem("advection", AdvectionProblem)
registry.register_problem("taylor_green", TaylorGreenProblem)
registry.register_problem("elasticity", ElasticityProblem)
registry.register_solver("insr", run, add_arguments, configure)

__all__ = [
    "AdvectionProblem",
    "ElasticityProblem",
    "InsrProblem",
    "InsrSettings",
    "InsrStepper",
    "RULES",
    "SpatialField",
    "SpatialFieldConfig",
    "Stage",
    "StageContext",
    "StepperConfig",
    "TaylorGreenProblem",
    "step_residual",
]
