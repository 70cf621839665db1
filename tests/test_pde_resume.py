"""PDE solves on the training engine: typed settings and their options, the L-BFGS block plan, the time
budget, resume equal to a straight run (in process), and SIGKILL then ``--resume`` (``pde solve``, PINN and
INSR) continuing from the checkpoint to the end of the budget.

The killed runs write to files, not pipes, and every wait polls with a generous timeout (a loaded machine
starts a process slowly)."""

import argparse
import json
import signal
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from omnifield.cli import main
from omnifield.config import config_from_dict, config_to_dict
from omnifield.errors import OmnifieldError
from omnifield.io.checkpoint import load_checkpoint
from omnifield.pde.solvers import solve
from omnifield.pde.solvers.optimize import PhysicsTask, lbfgs_plan
from omnifield.pde.solvers.run import CHECKPOINT
from omnifield.pde.solvers.settings import SolverSettings, add_solver_arguments, settings_for
from tests._processes import checkpoint_step, ctrl_c_at, finish, output, stop_when

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = SolverSettings(width=8, depth=2, steps=30, lbfgs_steps=0, n_interior=64, n_condition=32, lr=5e-3,
                      lr_final=1e-3, resample_every=7)


def test_every_settings_field_is_an_option_with_help():
    parser = argparse.ArgumentParser()
    add_solver_arguments(parser)
    options: dict[str, argparse.Action] = {}
    for action in parser._actions:  # the first spelling of each (--method before its old name --field)
        if action.option_strings:
            options.setdefault(action.dest, action)
    own = {"steps", "minutes", "checkpoint_every_s", "log_every"}  # the command's --steps/--minutes, or --set
    assert set(options) - {"help"} == {f.name for f in fields(SolverSettings)} - own
    assert all(options[name].help and options[name].default is None for name in set(options) - {"help"})
    args = parser.parse_args(["--n-interior", "99", "--no-double", "--encoding-lr", "0.5", "--arch", "modified"])
    assert (args.n_interior, args.double, args.encoding_lr, args.arch) == (99, False, 0.5, "modified")


def test_settings_layers_and_set_overrides():
    s = settings_for("pig", "helmholtz", {"width": 12}, ["lbfgs_block=7", "encoding_lr=0.25", "double=false"])
    assert (s.field, s.n_gaussians, s.width) == ("gaussian_embedding", 256, 12)  # solver, tuned, option
    assert (s.lbfgs_block, s.encoding_lr, s.double) == (7, 0.25, False)  # --set, a None field parsed as float
    assert config_from_dict(json.loads(json.dumps(config_to_dict(s)))) == s  # a registered config
    for bad, message in (["lr=0"], "--lr must be > 0"), (["nope=1"], "no option 'nope'"), (["width=1.5"], "whole"):
        with pytest.raises(OmnifieldError, match=message):
            settings_for("pinn", "heat", {}, bad)


def test_lbfgs_plan_blocks_resampling_and_continuation():
    assert lbfgs_plan(7, 50, 3) == [(3, False), (3, True), (1, True)]
    assert lbfgs_plan(120, 50, 0) == [(50, False), (50, False), (20, False)]
    assert lbfgs_plan(22, 5, 0, done=12, since=12) == [(5, False), (5, False)]  # an extended run goes on
    assert lbfgs_plan(7, 2, 3, done=3, since=3) == [(2, True), (1, False), (1, True)]


def test_time_budget_moves_the_schedule_by_optimiser_steps(tmp_path):
    from omnifield.pde.registry import get_problem
    from omnifield.pde.solvers.loss import PhysicsLoss
    from omnifield.pde.solvers.optimize import OptimizeSettings
    from omnifield.pde.solvers.run import build_solution

    problem = get_problem("heat")
    solution, soft = build_solution("hard", problem, TINY, torch.Generator().manual_seed(0))
    loss = PhysicsLoss(problem, solution, 16, 8, soft)
    task = PhysicsTask(loss, list(solution.parameters()), OptimizeSettings(adam_steps=100, lbfgs_steps=100,
                       lbfgs_block=10), torch.Generator().manual_seed(0))
    assert task.total_steps == 110  # 100 Adam steps + 10 blocks
    assert task._adam_position(30, 30 / 110) == 30.0  # bound by steps: the step itself
    assert task._adam_position(20, 0.25) == pytest.approx(50.0)  # a quarter of the time: 50 of 200 optimiser steps
    task.training_step(30, 0.55)  # past Adam's share of the time: the L-BFGS phase starts
    assert task.phase == "lbfgs" and task.adam_taken == 30 and task.iterations == 10


def _interrupted_then_resumed(tmp_path, monkeypatch, solver, settings, stop_at):
    """A straight solve, and one stopped by Ctrl-C at engine step ``stop_at`` then resumed; both outputs."""
    straight = solve("heat", solver, settings, tmp_path / "straight", quiet=True)
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        ctrl_c_at(patch, PhysicsTask, "training_step", step=stop_at)
        solve("heat", solver, settings, tmp_path / "resumed", quiet=True)
    assert load_checkpoint(tmp_path / "resumed" / CHECKPOINT)[1]["step"] == stop_at
    resumed = solve("heat", solver, settings, tmp_path / "resumed", quiet=True, resume=True)
    return straight, resumed


def _outputs(folder: Path):
    return np.load(folder / "solution.npz")["prediction"], json.loads((folder / "loss_history.json").read_text())


def test_adam_phase_resume_equals_the_straight_run(tmp_path, monkeypatch):
    # causal: the eps schedule (moves every few steps at these weights), resampled batches, lr decay all resume
    settings = replace(TINY, chunks=4, eps="1e-3,1e-2,0.1,1")
    straight, resumed = _interrupted_then_resumed(tmp_path, monkeypatch, "causal", settings, stop_at=17)
    (pred_a, hist_a), (pred_b, hist_b) = _outputs(tmp_path / "straight"), _outputs(tmp_path / "resumed")
    assert hist_a[-1]["eps"] > 1e-3  # the schedule moved
    assert hist_a == hist_b
    np.testing.assert_array_equal(pred_a, pred_b)
    assert straight["rel_l2"] == resumed["rel_l2"]


def test_lbfgs_phase_resume_equals_the_straight_run(tmp_path, monkeypatch):
    # float64 L-BFGS with a fresh batch every 4 iterations: the phase, dtype switch and curvature memory resume
    settings = replace(TINY, steps=6, lbfgs_steps=10, lbfgs_block=3, lbfgs_resample_every=4, lbfgs_double=True,
                       lbfgs_points=48)
    _interrupted_then_resumed(tmp_path, monkeypatch, "hard", settings, stop_at=8)  # after two blocks
    (pred_a, hist_a), (pred_b, hist_b) = _outputs(tmp_path / "straight"), _outputs(tmp_path / "resumed")
    assert [h["step"] for h in hist_a if h["phase"] == "lbfgs"] == [9, 10, 13, 14, 16]
    assert hist_a == hist_b and pred_a.dtype == np.float64
    np.testing.assert_array_equal(pred_a, pred_b)


def _poison_after(monkeypatch, calls: int) -> None:
    """Every physics loss after the first ``calls`` is NaN."""
    from omnifield.pde.solvers.loss import PhysicsLoss

    clean, seen = PhysicsLoss.__call__, []

    def poisoned(self, batch):
        total, parts = clean(self, batch)
        seen.append(1)
        if len(seen) > calls:
            total, parts = total * float("nan"), {**parts, "loss": float("nan")}
        return total, parts

    monkeypatch.setattr(PhysicsLoss, "__call__", poisoned)


def test_a_diverging_adam_step_stops_with_one_error_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    _poison_after(monkeypatch, 3)
    with pytest.raises(OmnifieldError, match="training diverged at step 3"):
        solve("heat", "hard", replace(TINY, checkpoint_every_s=0.0), tmp_path, quiet=True)
    assert load_checkpoint(tmp_path / CHECKPOINT)[1]["step"] == 3


def test_a_non_finite_lbfgs_block_is_undone_and_ends_the_phase(tmp_path, monkeypatch):
    adam_only = solve("heat", "hard", replace(TINY, steps=4), tmp_path / "adam", quiet=True)
    _poison_after(monkeypatch, 4)  # the four Adam steps; the first L-BFGS block turns NaN
    metrics = solve("heat", "hard", replace(TINY, steps=4, lbfgs_steps=6, lbfgs_block=3), tmp_path / "run", quiet=True)
    assert metrics["rel_l2"] == adam_only["rel_l2"]  # the block's update was undone
    history = json.loads((tmp_path / "run" / "loss_history.json").read_text())
    assert [h["phase"] for h in history] == ["adam", "adam"]  # steps 0 and 3; no block recorded
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)[1]["finished"] is True


def test_resume_refuses_another_run_and_a_missing_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    small = ["--steps", "2", "--lbfgs-steps", "0", "--width", "4", "--depth", "1", "--n-interior", "16", "--quiet"]
    assert main(["pde", "solve", "heat", "--solver", "hard", "--out", str(out), "--resume", *small]) == 2
    assert "no solver checkpoint to resume" in capsys.readouterr().err and not out.exists()
    assert main(["pde", "solve", "heat", "--solver", "hard", "--out", str(out), *small]) == 0
    assert main(["pde", "solve", "heat", "--solver", "pinn", "--out", str(out), "--resume", *small]) == 2
    assert "holds a 'heat' 'hard' solve" in capsys.readouterr().err


# --------------------------------------------------------------------------- SIGKILL, then --resume
def _kill_then_resume(args: list[str], reached, tmp_path: Path) -> None:
    proc = stop_when(reached, args, tmp_path / "log")
    assert proc.returncode == -signal.SIGKILL
    done = finish([*args, "--resume"], tmp_path / "resume")
    assert done.returncode == 0, output(tmp_path / "resume")[1][-2000:]


def _log_steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def test_sigkill_then_resume_continues_a_pinn_solve(tmp_path):
    out = tmp_path / "run"
    args = ["pde", "solve", "heat", "--solver", "hard", "--steps", "100", "--lbfgs-steps", "20", "--width", "8",
            "--depth", "1", "--n-interior", "64", "--threads", "1", "--quiet", "--out", str(out),
            "--set", "checkpoint_every_s=0", "--set", "log_every=1", "--set", "lbfgs_block=10"]
    ckpt = out / CHECKPOINT
    killed_at = {}

    def reached() -> bool:
        killed_at["step"] = checkpoint_step(ckpt)
        return killed_at["step"] >= 10

    _kill_then_resume(args, reached, tmp_path)
    _, meta = load_checkpoint(ckpt)
    assert meta["step"] == 102 and meta["phase"] == "lbfgs"  # the whole budget: 100 Adam steps + 2 blocks
    steps = _log_steps(out / "log.jsonl")
    assert steps[-1] == 102 and steps.count(1) == 1  # continued, not started again
    assert set(range(killed_at["step"], 103)) <= set(steps)
    history = json.loads((out / "loss_history.json").read_text())
    assert [h["step"] for h in history if h["phase"] == "adam"] == [*range(0, 100, 10), 99]
    assert [h["step"] for h in history if h["phase"] == "lbfgs"] == [110, 120]


def test_sigkill_then_resume_continues_an_insr_run(tmp_path):
    out = tmp_path / "run"
    args = ["pde", "solve", "advection", "--solver", "insr", "--insr-time-steps", "4", "--steps", "15",
            "--insr-init-iters", "20", "--insr-samples", "64", "--insr-width", "8", "--threads", "1", "--quiet",
            "--out", str(out)]
    state = out / "state.json"
    _kill_then_resume(args, lambda: state.is_file() and json.loads(state.read_text())["step"] >= 1, tmp_path)
    meta = json.loads(state.read_text())
    assert meta["step"] == 4 and len(meta["log"]) == 5  # the initial fit and four steps, none run twice
    steps = _log_steps(out / "log.jsonl")
    assert steps[-1] == 4 and sorted(set(steps)) == [1, 2, 3, 4] and steps.count(1) == 1  # continued
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["errors"]["insr"]) == 5  # every frame, the ones before the kill too (kept in the state)
