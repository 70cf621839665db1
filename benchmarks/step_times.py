"""Seconds per training step of each task family, through the public CLI; optionally two checkouts side by side.

Each task is one ``omnifield`` command with a step-count flag. It runs as a subprocess twice, with N1 and
N2 steps, and the time of one step is ``(wall(N2) - wall(N1)) / (N2 - N1)``: start-up, data loading, the
first step's native compile and the final evaluation cancel. A warm-up run (N1 steps) per task and
checkout comes first, so kernels are compiled in the cache before anything is timed. Every run's outputs
(its own temporary folder) are read back to check that it made exactly the steps asked for; a run that
did not, or that failed, marks the task as failed for that checkout with one line of explanation.

With ``--baseline-repo PATH`` the same tasks run on a second checkout in the same process, interleaved
task by task and repeat by repeat (so a load change on the machine hits both alike), each child with
``PYTHONPATH=<checkout>`` and this interpreter. Both use the bundled data of this checkout.
``ratio`` is this checkout's time per step over the baseline's (above 1: slower).

Tasks (unit: one optimiser step unless said otherwise):

- ``train_hashgrid``, ``train_mlp``, ``train_splat``, ``train_splat_compact``: ``train data/lego_200``
  (``--no-eval``); checked by the checkpoint's step. ``train_hashgrid_cam`` and ``train_mlp_cam`` (CAM
  decoders on those bases; only when named in ``--tasks``) give the cost of CAM's modulation per step.
- ``convert_triplane`` (PVD hash grid -> tri-plane), ``convert_splat`` (hash grid -> Gaussians; only
  when named in ``--tasks``: rendering the teacher's targets takes minutes before the first step): a
  teacher is trained once per checkout (``train --steps 30``); checked by ``metrics.json``'s step.
- ``pde_adam`` (Burgers PINN, Adam), ``pde_lbfgs`` (one Adam step, then N L-BFGS iterations); checked
  by ``loss_history.json``. L-BFGS iterations include their line-search evaluations.
- ``pde_insr``: INSR advection, one time step of N Adam iterations (N <= the stepper's 40 minimum
  iterations, so none stops early); checked by ``metrics.json``'s iterations per step.
- ``fit_image`` (astronaut), ``fit_sdf`` (bunny): checked by ``metrics.json``'s steps.
- ``mae_pretrain``: on a few procedural room grids made once (``mae scenes``); checked by ``history.json``.

``nav run --fit-steps`` is not a task: the flight after the fit depends on how well the field fitted
(with few steps the planner refuses to start), so the difference of two runs is not the fit alone.

    python benchmarks/step_times.py [--quick] [--baseline-repo PATH] [--repeats K] [--threads T]
                                    [--tasks a,b,c] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
SCENE = DATA / "lego_200"


class StepMismatch(Exception):
    """A run finished but made a different number of steps than asked (or its outputs say nothing)."""


def _json(path: Path):
    if not path.exists():
        raise StepMismatch(f"no {path.name} written")
    return json.loads(path.read_text())


def checkpoint_step(out: Path) -> int:
    """The ``step`` recorded in the header of ``out/checkpoint.safetensors`` (read without torch)."""
    path = out / "checkpoint.safetensors"
    if not path.exists():
        raise StepMismatch("no checkpoint.safetensors written")
    with path.open("rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return int(json.loads(header["__metadata__"]["omnifield"])["step"])


def metrics_key(key: str) -> Callable[[Path], int]:
    """Step counter ``key`` of ``out/metrics.json``."""
    return lambda out: int(_json(out / "metrics.json")[key])


def pde_history_steps(out: Path) -> int:
    """Optimiser steps of a PINN run: Adam steps (last logged index + 1), or the last L-BFGS total."""
    history = _json(out / "loss_history.json")
    lbfgs = [h["step"] for h in history if h["phase"] == "lbfgs"]
    return lbfgs[-1] if lbfgs else history[-1]["step"] + 1


def mae_history_steps(out: Path) -> int:
    return _json(out / "history.json")[-1]["step"] + 1


@dataclass
class Task:
    """One command: ``argv(out, n, prep, threads)`` with n steps; ``steps(out)`` reads back the steps made.

    ``expected(n)`` is what ``steps`` must return; ``prepare(prep, run)`` makes inputs once per checkout
    (``run(argv, out)`` runs an omnifield command in that checkout)."""

    name: str
    argv: Callable[[Path, int, Path, int], list[str]]
    steps: Callable[[Path], int]
    full: tuple[int, int]
    quick: tuple[int, int] | None = None  # None: not in --quick
    expected: Callable[[int], int] = lambda n: n
    prepare: Callable[[Path, Callable], None] | None = None
    unit: str = "step"
    default: bool = True  # False: only when named in --tasks


def _train(method: str, *extra: str):
    return lambda out, n, prep, t: ["train", str(SCENE), "--method", method, "--steps", str(n), "--no-eval",
                                    "--out", str(out), *extra]


def _teacher(prep: Path, run) -> None:
    run(["train", str(SCENE), "--method", "hashgrid", "--steps", "30", "--no-eval", "--out", str(prep / "teacher")],
        prep / "teacher")


def _convert(to: str, *extra: str):
    return lambda out, n, prep, t: ["convert", str(prep / "teacher"), "--to", to, "--steps", str(n),
                                    "--eval-views", "1", "--quiet", "--out", str(out), *extra]


def _grids(prep: Path, run) -> None:
    run(["mae", "scenes", str(prep / "grids"), "--count", "8", "--threads", "1"], prep / "grids")


def _pinn(adam: int, lbfgs: int, out: Path, t: int) -> list[str]:
    return ["pde", "solve", "burgers", "--solver", "pinn", "--steps", str(adam), "--lbfgs-steps", str(lbfgs),
            "--threads", str(t), "--quiet", "--out", str(out)]


TASKS = [
    Task("train_hashgrid", _train("hashgrid"), checkpoint_step, (10, 110), (5, 25)),
    Task("train_mlp", _train("mlp"), checkpoint_step, (3, 18)),
    Task("train_hashgrid_cam", _train("hashgrid_cam"), checkpoint_step, (10, 110), default=False),
    Task("train_mlp_cam", _train("mlp_cam"), checkpoint_step, (3, 18), default=False),
    Task("train_splat", _train("splat"), checkpoint_step, (20, 220)),
    Task("train_splat_compact", _train("splat", "--compact"), checkpoint_step, (20, 220)),
    Task("convert_triplane", _convert("triplane"), metrics_key("step"), (10, 110), prepare=_teacher),
    Task("convert_splat", _convert("splat", "--n-gaussians", "5000"), metrics_key("step"), (10, 110),
         prepare=_teacher, default=False),
    Task("pde_adam", lambda out, n, prep, t: _pinn(n, 0, out, t), pde_history_steps, (20, 220), (5, 25)),
    Task("pde_lbfgs", lambda out, n, prep, t: _pinn(1, n, out, t), pde_history_steps, (5, 45),
         expected=lambda n: n + 1, unit="L-BFGS iteration"),
    Task("pde_insr", lambda out, n, prep, t: [
        "pde", "solve", "advection", "--solver", "insr", "--insr-time-steps", "1", "--steps", str(n),
        "--insr-init-iters", "50", "--threads", str(t), "--quiet", "--out", str(out)],
        metrics_key("mean_iters_per_step"), (10, 40), unit="INSR iteration"),
    Task("fit_image", lambda out, n, prep, t: [
        "fit", "image", str(DATA / "astronaut" / "astronaut.png"), "--steps", str(n), "--threads", str(t),
        "--out", str(out)], metrics_key("steps"), (20, 520), (10, 210)),
    Task("fit_sdf", lambda out, n, prep, t: [
        "fit", "sdf", str(DATA / "bunny" / "bunny.obj"), "--steps", str(n), "--resolution", "32",
        "--threads", str(t), "--out", str(out)], metrics_key("steps"), (20, 320)),
    Task("mae_pretrain", lambda out, n, prep, t: [
        "mae", "pretrain", str(prep / "grids"), "--steps", str(n), "--holdout", "2", "--threads", str(t),
        "--out", str(out)], mae_history_steps, (5, 105), (3, 23), prepare=_grids),
]
BY_NAME = {t.name: t for t in TASKS}


class TaskFailed(Exception):
    """A command exited non-zero or did not make the steps asked for; the message is one line."""


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


@dataclass
class Checkout:
    """A source tree of the project, run as ``sys.executable -m omnifield`` with ``PYTHONPATH`` = it."""

    label: str
    root: Path
    threads: int
    work: Path
    prepared: set = field(default_factory=set)

    def env(self) -> dict:
        env = dict(os.environ, PYTHONPATH=str(self.root))
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[key] = str(self.threads)
        return env

    def run(self, argv: list[str], out: Path) -> float:
        """Run one command with outputs in ``out`` (must not exist yet); returns its wall seconds."""
        out.parent.mkdir(parents=True, exist_ok=True)
        tic = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "omnifield", *argv], cwd=self.work, env=self.env(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - tic
        if proc.returncode != 0:
            raise TaskFailed(f"exit {proc.returncode}: {last_line(proc.stderr or proc.stdout)}")
        return wall

    def timed(self, task: Task, n: int, tag: str) -> float:
        """Wall seconds of ``task`` with ``n`` steps, after checking that it made them."""
        if task.prepare is not None and task.prepare not in self.prepared:
            task.prepare(self.work / "prep", self.run)
            self.prepared.add(task.prepare)
        out = self.work / f"{task.name}-{tag}-{n}"
        wall = self.run(task.argv(out, n, self.work / "prep", self.threads), out)
        try:
            made = task.steps(out)
        except (StepMismatch, KeyError, IndexError, ValueError) as err:
            raise TaskFailed(f"cannot read the steps made ({type(err).__name__}: {err})") from err
        if made != task.expected(n):
            raise TaskFailed(f"asked for {task.expected(n)} steps, the run made {made}")
        return wall


def per_step(wall1: float, wall2: float, n1: int, n2: int) -> float:
    """Seconds per step from the walls of an n1- and an n2-step run: ``(wall2 - wall1) / (n2 - n1)``."""
    return (wall2 - wall1) / (n2 - n1)


def measure(task: Task, checkouts: list[Checkout], n1: int, n2: int, repeats: int, log=print) -> dict:
    """One row: the median seconds per step of each checkout over ``repeats``, interleaved, and the ratio."""
    samples: dict[str, list[float]] = {c.label: [] for c in checkouts}
    errors: dict[str, str] = {}
    for repeat in range(-1, repeats):  # -1: warm-up (compiles kernels, fills caches), not timed
        for c in checkouts:
            if c.label in errors:
                continue
            try:
                if repeat < 0:
                    c.timed(task, n1, "warmup")
                    continue
                w1 = c.timed(task, n1, f"r{repeat}")
                w2 = c.timed(task, n2, f"r{repeat}")
            except TaskFailed as err:
                errors[c.label] = str(err)
                log(f"  {task.name} [{c.label}] failed: {err}")
                continue
            samples[c.label].append(per_step(w1, w2, n1, n2))
            log(f"  {task.name} [{c.label}] repeat {repeat}: {w1:.1f} s / {w2:.1f} s -> "
                f"{samples[c.label][-1] * 1e3:.2f} ms per {task.unit}")
    row = {"task": task.name, "unit": task.unit, "n1": n1, "n2": n2, "seconds_per_step": {}, "samples": samples,
           "repos": {c.label: str(c.root) for c in checkouts}}
    for c in checkouts:
        row["seconds_per_step"][c.label] = None if c.label in errors else statistics.median(samples[c.label])
    if errors:
        row["failed"] = errors
    values = list(row["seconds_per_step"].values())
    row["ratio"] = values[0] / values[1] if len(values) == 2 and None not in values and values[1] > 0 else None
    return row


def table(rows: list[dict], labels: list[str]) -> str:
    def cell(row, label):
        value = row["seconds_per_step"].get(label)
        return "failed" if value is None else f"{value:.4f}"

    head = ["task"] + [f"{label} s/step" for label in labels] + (["ratio"] if len(labels) == 2 else [])
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for row in rows:
        cells = [row["task"]] + [cell(row, label) for label in labels]
        if len(labels) == 2:
            cells.append("-" if row["ratio"] is None else f"{row['ratio']:.3f}")
        lines.append(" | ".join(cells))
        for label, message in row.get("failed", {}).items():
            lines.append(f"  ({row['task']} failed in {label}: {message})")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few tasks with small step counts (<= 2 min)")
    parser.add_argument("--out", type=Path, help="write the rows as a JSON list")
    parser.add_argument("--baseline-repo", type=Path, help="a second checkout of the project to compare with")
    parser.add_argument("--repeats", type=int, help="median of this many N1/N2 pairs (default 3; --quick: 1)")
    parser.add_argument("--threads", type=int, default=2, help="OMP/torch threads of each child (default 2)")
    parser.add_argument("--tasks", help="comma-separated task names: " + ",".join(BY_NAME))
    parser.add_argument("--steps", help="N1,N2 for every task instead of its own step counts")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")
    if args.baseline_repo is not None and not (args.baseline_repo / "omnifield" / "__init__.py").exists():
        parser.error(f"--baseline-repo {args.baseline_repo}: not a checkout of the project")
    if args.tasks:
        unknown = [name for name in args.tasks.split(",") if name not in BY_NAME]
        if unknown:
            parser.error(f"unknown task(s) {','.join(unknown)}; known: {','.join(BY_NAME)}")
    if args.steps:
        try:
            args.steps = tuple(int(v) for v in args.steps.split(","))
        except ValueError:
            args.steps = ()
        if len(args.steps) != 2 or not 0 < args.steps[0] < args.steps[1]:
            parser.error("--steps takes N1,N2 with 0 < N1 < N2")
    return args


def selected(args: argparse.Namespace) -> list[tuple[Task, int, int]]:
    """The tasks to run with their (n1, n2): --tasks (else all, or the quick ones); --steps, else quick or full."""
    names = args.tasks.split(",") if args.tasks else [t.name for t in TASKS if (t.quick if args.quick else t.default)]
    tasks = [BY_NAME[n] for n in names]
    return [(t, *(args.steps or ((t.quick or t.full) if args.quick else t.full))) for t in tasks]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="step_times-") as tmp:
        roots = [("this", REPO)] + ([("baseline", args.baseline_repo.resolve())] if args.baseline_repo else [])
        checkouts = [Checkout(label, root, args.threads, Path(tmp) / label) for label, root in roots]
        for c in checkouts:
            c.work.mkdir()
        rows = []
        for task, n1, n2 in selected(args):
            print(f"{task.name}: {n1} and {n2} steps", flush=True)
            rows.append(measure(task, checkouts, n1, n2, args.repeats, log=lambda s: print(s, flush=True)))
    print(table(rows, [c.label for c in checkouts]))
    if args.out:
        sys.path.insert(0, str(REPO))
        from omnifield.io.atomic import write_text_atomic
        write_text_atomic(args.out, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
