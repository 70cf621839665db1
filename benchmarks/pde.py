"""PDE benchmark: relative L2, wall time and parameters per problem x solver, beside DeepXDE.

    python benchmarks/pde.py                 # full sizes (targets: Burgers <= 1e-3, Allen-Cahn causal <= 5e-3,
                                             #                      Helmholtz PIG <= 1e-4)
    python benchmarks/pde.py --quick         # <= 2 min: tiny budgets, checks that everything runs
    python benchmarks/pde.py --deepxde /path/to/venv/bin/python --out pde.json

DeepXDE is never a dependency of omnifield: it runs in its own interpreter (``--deepxde PYTHON``, else
``$DEEPXDE_PYTHON``; the row is skipped when neither is given) as a subprocess with
``DDE_BACKEND=pytorch``, on its own Burgers example configuration (FNN 3 x 20 tanh, 2540/80/160
points, Adam 15k at 1e-3 then L-BFGS), and its prediction is scored against the same spectral
reference as ours.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from omnifield.pde.problem import relative_l2
from omnifield.pde.problems import Burgers
from omnifield.pde.solvers import solve
from omnifield.pde.solvers.settings import PROBLEM_DEFAULTS, SOLVER_DEFAULTS, SolverSettings


@dataclass
class Case:
    """One row: a problem, a solver, the target (if any) and the settings of the full and quick runs."""

    problem: str
    solver: str
    target: float | None = None
    label: str = ""
    full: dict = field(default_factory=dict)
    quick: dict = field(default_factory=lambda: dict(steps=60, lbfgs_steps=20, n_interior=512, lbfgs_points=0))

    def settings(self, quick: bool) -> SolverSettings:
        s = replace(SolverSettings(), **SOLVER_DEFAULTS.get(self.solver, {}))
        s = replace(s, **PROBLEM_DEFAULTS.get((self.problem, self.solver), {}))
        return replace(s, **(self.quick if quick else self.full))


CASES = [
    Case("burgers", "hard", 1e-3),
    Case("burgers", "hard", None, label="short", full=dict(steps=1000, lbfgs_steps=500, n_interior=2540)),
    Case("burgers", "pinn"),
    Case("allen_cahn", "causal", 5e-3),
    Case("helmholtz", "pig", 1e-4),
    Case("helmholtz", "hard"),
    Case("poisson_lshape", "moe"),
    Case("heat", "hard"),
    Case("kovasznay", "pinn"),
]

DEEPXDE_SCRIPT = r'''
import json, sys, time
import numpy as np
import deepxde as dde
import torch

torch.set_num_threads(int(sys.argv[4]))
adam_iters, lbfgs_iters = int(sys.argv[2]), int(sys.argv[3])
grid = np.load(sys.argv[1])["points"]

# DeepXDE's examples/pinn_forward/Burgers.py
geom = dde.geometry.Interval(-1, 1)
timedomain = dde.geometry.TimeDomain(0, 0.99)
geomtime = dde.geometry.GeometryXTime(geom, timedomain)

def pde(x, y):
    dy_x = dde.grad.jacobian(y, x, i=0, j=0)
    dy_t = dde.grad.jacobian(y, x, i=0, j=1)
    dy_xx = dde.grad.hessian(y, x, i=0, j=0)
    return dy_t + y * dy_x - 0.01 / np.pi * dy_xx

bc = dde.icbc.DirichletBC(geomtime, lambda x: 0, lambda _, on_boundary: on_boundary)
ic = dde.icbc.IC(geomtime, lambda x: -np.sin(np.pi * x[:, 0:1]), lambda _, on_initial: on_initial)
data = dde.data.TimePDE(geomtime, pde, [bc, ic], num_domain=2540, num_boundary=80, num_initial=160)
net = dde.nn.FNN([2] + [20] * 3 + [1], "tanh", "Glorot normal")
model = dde.Model(data, net)
start = time.perf_counter()
model.compile("adam", lr=1e-3)
model.train(iterations=adam_iters, display_every=max(adam_iters, 1))
if lbfgs_iters > 0:
    dde.optimizers.config.set_LBFGS_options(maxiter=lbfgs_iters)
    model.compile("L-BFGS")
    model.train(display_every=max(lbfgs_iters, 1))
elapsed = time.perf_counter() - start
pred = model.predict(grid)
n_params = sum(p.numel() for p in net.parameters())
np.save(sys.argv[5], pred)
print(json.dumps({"time_s": elapsed, "n_params": n_params}))
'''


def find_deepxde(flag: str | None) -> str | None:
    """The DeepXDE interpreter: ``--deepxde``, else ``$DEEPXDE_PYTHON``; ``None`` when neither is set.

    A named interpreter that does not exist is an error, not a silently skipped row.
    """
    candidate = flag or os.environ.get("DEEPXDE_PYTHON")
    if candidate and not Path(candidate).is_file():
        source = "--deepxde" if flag else "$DEEPXDE_PYTHON"
        raise SystemExit(f"{source} {candidate}: no such interpreter")
    return candidate or None


def run_deepxde(python: str, quick: bool, threads: int) -> dict:
    """DeepXDE's Burgers example in its own interpreter; scored on our spectral reference."""
    reference = Burgers().reference()
    grid = reference.points()
    adam, lbfgs = (300, 50) if quick else (15000, 15000)
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "grid.npz", points=grid)
        script = Path(tmp) / "deepxde_burgers.py"
        script.write_text(DEEPXDE_SCRIPT)
        env = {**os.environ, "DDE_BACKEND": "pytorch", "OMP_NUM_THREADS": str(threads)}
        start = time.perf_counter()
        proc = subprocess.run(
            [python, str(script), str(Path(tmp) / "grid.npz"), str(adam), str(lbfgs), str(threads), str(Path(tmp) / "pred.npy")],
            env=env, capture_output=True, text=True, cwd=tmp,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            return {"problem": "burgers", "solver": "deepxde", "error": proc.stderr.strip().splitlines()[-1:]}
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        pred = np.load(Path(tmp) / "pred.npy").reshape(reference.values.shape)
    return {
        "problem": "burgers", "solver": "deepxde", "label": f"adam {adam} + lbfgs {lbfgs}",
        "rel_l2": relative_l2(pred, reference), "time_s": info["time_s"], "wall_s": wall,
        "n_params": info["n_params"], "target": None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets (<= 2 min): checks, not accuracy")
    parser.add_argument("--out", type=Path, help="write the table as a JSON list of rows")
    parser.add_argument("--deepxde", help="python interpreter of an environment with deepxde (pytorch backend)")
    parser.add_argument("--no-deepxde", action="store_true", help="skip the DeepXDE row")
    parser.add_argument("--only", help="comma-separated problem:solver[:label] rows to run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="keep each run's plots and npz under this folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    cases = CASES
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in CASES if ":".join(filter(None, (c.problem, c.solver, c.label))) in wanted]
    rows = []
    work = args.keep or Path(tempfile.mkdtemp(prefix="pde_bench_"))
    for case in cases:
        name = "_".join(filter(None, (case.problem, case.solver, case.label)))
        metrics = solve(case.problem, case.solver, case.settings(args.quick), work / name, seed=args.seed, quiet=True)
        rows.append({"problem": case.problem, "solver": case.solver, "label": case.label, "target": case.target,
                     "rel_l2": metrics["rel_l2"], "time_s": metrics["time_s"], "n_params": metrics["n_params"],
                     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
        _print_row(rows[-1])
    python = None if args.no_deepxde else find_deepxde(args.deepxde)
    if python:
        rows.append(run_deepxde(python, args.quick, args.threads))
        _print_row(rows[-1])
    elif not args.no_deepxde:
        print("DeepXDE: no interpreter given (pass --deepxde PYTHON or set $DEEPXDE_PYTHON); row skipped")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'problem':<15} {'solver':<8} {'label':<22} {'rel L2':>10} {'target':>8} {'met':>4} {'time s':>8} {'params':>7}")
    for r in rows:
        if "rel_l2" not in r:
            print(f"{r['problem']:<15} {r['solver']:<8} failed: {r.get('error')}")
            continue
        met = "" if r["target"] is None else ("yes" if r["rel_l2"] <= r["target"] else "no")
        target = "" if r["target"] is None else f"{r['target']:.0e}"
        print(f"{r['problem']:<15} {r['solver']:<8} {r.get('label', ''):<22} {r['rel_l2']:>10.3e} {target:>8} {met:>4} "
              f"{r['time_s']:>8.1f} {r['n_params']:>7}")
    if args.out:
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(json.dumps(rows, indent=2))
        tmp.replace(args.out)
    return 0


def _print_row(row: dict) -> None:
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
