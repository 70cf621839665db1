"""INSR vs classical solvers: error over time, memory of the state and wall time per problem.

    python benchmarks/insr.py [--quick] [--out table.json] [--problems advection,taylor_green,elasticity]

Rows per problem: INSR at one or two time steps, and the classical solver run in
the same process (grid solvers at the same memory as the network; the FEM is the
reference of the elasticity problem, so its row is a coarser mesh against the
reference mesh, and the reference's own row shows its cost). ``rel_l2_end`` is the relative L2 error at the final time,
``rel_l2_max`` the largest over all steps. CPU, one thread.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from omnifield.pde.insr import AdvectionProblem, ElasticityProblem, InsrStepper, TaylorGreenProblem
from omnifield.pde.insr.compare import compare, relative_l2
from omnifield.pde.insr.run import simulate, solver_settings
from omnifield.pde.reference.fem_elasticity import NeoHookeanCantilever

# (problem, time steps to try, simulated time); --quick runs the first dt for a shorter time
SETUPS = {
    "advection": (AdvectionProblem, (0.1, 0.05), 2.0, 0.5),
    "taylor_green": (TaylorGreenProblem, (0.1, 0.05), 1.0, 0.2),
    "elasticity": (ElasticityProblem, (0.02,), 0.2, 0.04),
}


def _errors(solution: np.ndarray, truth: np.ndarray) -> list[float]:
    return [relative_l2(solution[s], truth[s]) for s in range(1, len(truth))]


def bench_problem(name: str, quick: bool) -> list[dict]:
    """All rows of one problem."""
    make, dts, t_end, t_quick = SETUPS[name]
    rows = []
    for dt in dts[:1] if quick else dts:
        n_steps = max(1, round((t_quick if quick else t_end) / dt))
        problem = make(dt=dt, n_steps=n_steps)
        cfg, decoder = solver_settings(problem)
        if quick:
            cfg.init_iters, cfg.max_iters = min(cfg.init_iters, 400), min(cfg.max_iters, 150)
        torch.manual_seed(0)
        stepper = InsrStepper(problem, cfg, decoder)
        comparison = compare(problem, stepper.state_bytes() // 4, n_steps)
        truth = comparison.solutions[comparison.truth]
        start = time.perf_counter()
        result = simulate(stepper, comparison, n_steps, progress=False)
        wall = time.perf_counter() - start
        frames = np.stack([result["frames"][s] for s in range(n_steps + 1)])
        err = _errors(frames, truth)
        rows.append(
            {
                "problem": name, "solver": f"insr ({cfg.rule})", "dt": dt, "steps": n_steps,
                "state_bytes": stepper.state_bytes(), "wall_s": round(wall, 2),
                "init_s": round(stepper.log[0]["wall_s"], 2), "mean_iters": float(np.mean(result["iters"])),
                "rel_l2_end": err[-1], "rel_l2_max": max(err), "vs": comparison.truth,
            }
        )
        for solver, solution in comparison.solutions.items():
            if solver == comparison.truth and solver not in comparison.wall_s:
                continue  # an exact solution: nothing was run
            err = _errors(solution, truth)
            rows.append(
                {
                    "problem": name, "solver": solver, "dt": dt, "steps": n_steps,
                    "state_bytes": comparison.state_bytes[solver], "wall_s": round(comparison.wall_s[solver], 3),
                    "init_s": 0.0, "mean_iters": 0.0, "rel_l2_end": err[-1], "rel_l2_max": max(err), "vs": comparison.truth,
                }
            )
        if name == "elasticity":
            rows.append(_coarse_fem_row(problem, comparison, n_steps))
    return rows


def _coarse_fem_row(problem: ElasticityProblem, comparison, n_steps: int) -> dict:
    """A 21 x 6 mesh against the 41 x 11 reference (how far the reference itself is from converged)."""
    fem = NeoHookeanCantilever(problem.length, problem.height, problem.density, problem.youngs, problem.poisson, problem.gravity, 21, 6)
    start = time.perf_counter()
    coarse = fem.simulate(problem.dt, n_steps)
    wall = time.perf_counter() - start
    # the coarse mesh's vertices are every other vertex of the reference mesh
    ref = comparison.solutions["fem"].reshape(n_steps + 1, 41, 11, 2)[:, ::2, ::2].reshape(n_steps + 1, -1, 2)
    err = _errors(coarse, ref)
    return {
        "problem": "elasticity", "solver": "fem 21x6", "dt": problem.dt, "steps": n_steps,
        "state_bytes": 2 * 8 * coarse[0].size, "wall_s": round(wall, 2), "init_s": 0.0, "mean_iters": 0.0,
        "rel_l2_end": err[-1], "rel_l2_max": max(err), "vs": "fem 41x11",
    }


def print_table(rows: list[dict]) -> None:
    cols = ["problem", "solver", "dt", "steps", "state_bytes", "wall_s", "init_s", "mean_iters", "rel_l2_end", "rel_l2_max", "vs"]
    cells = [[f"{r[c]:.2e}" if c.startswith("rel") else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one time step size, short horizon, fewer iterations (<= 2 min)")
    parser.add_argument("--out", default=None, help="write the table as a JSON list of rows")
    parser.add_argument("--problems", default=",".join(SETUPS), help="comma-separated subset of: " + ", ".join(SETUPS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.problems.split(","):
        if name not in SETUPS:
            parser.error(f"--problems: unknown problem {name!r}; choose from {', '.join(SETUPS)}")
        rows += bench_problem(name, args.quick)
    print_table(rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
