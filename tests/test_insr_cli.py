"""``omnifield pde solve PROBLEM --solver insr``: outputs, resume, and clear errors."""

import json

import pytest
import torch

from omnifield.cli import main

FAST = ["--steps", "20", "--insr-init-iters", "40", "--insr-samples", "128", "--insr-width", "8", "--threads", "1", "--quiet"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


def test_advection_writes_animation_plots_metrics_and_resumes(tmp_path, capsys):
    assert main(["pde", "solve", "advection", "--solver", "insr", "--insr-time-steps", "2", "--out", str(tmp_path), *FAST]) == 0
    for name in ("animation.gif", "error_over_time.png", "metrics.json", "state.json", "state.safetensors"):
        assert (tmp_path / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["errors"]["insr"]) == 3 and set(metrics["errors"]) == {"insr", "upwind", "semi_lagrangian"}
    assert metrics["state_bytes"] == metrics["state_bytes_upwind"]  # grid solvers get the same memory
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["solver"] == "insr" and printed["rel_l2"] == pytest.approx(metrics["rel_l2"])
    args = ["pde", "solve", "advection", "--solver", "insr", "--insr-time-steps", "3", "--out", str(tmp_path)]
    assert main([*args, "--insr-resume", str(tmp_path / "state.json"), *FAST]) == 0
    assert json.loads((tmp_path / "state.json").read_text())["step"] == 3


def test_problem_parameters_reach_the_saved_state(tmp_path):
    args = ["pde", "solve", "advection", "--solver", "insr", "--insr-time-steps", "1", "--out", str(tmp_path)]
    assert main([*args, "--insr-param", "speed=0.5", "--insr-param", "n_steps=1", *FAST]) == 0
    problem = json.loads((tmp_path / "state.json").read_text())["problem"]
    assert problem["speed"] == 0.5 and problem["type"] == "insr_advection"


@pytest.mark.parametrize(
    "problem, extra, message",
    [
        ("advection", ["--insr-rule", "rk4"], "--insr-rule"),
        ("elasticity", ["--insr-rule", "midpoint"], "implicit_euler"),
        ("advection", ["--insr-dt", "-1"], "--insr-dt"),
        ("advection", ["--insr-resume", "nowhere.json"], "not found"),
        ("taylor_green", ["--insr-param", "viscosty=0.1"], "unknown parameter"),
        ("taylor_green", ["--insr-param", "viscosity=abc"], "not a valid float"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, problem, extra, message):
    assert main(["pde", "solve", problem, "--solver", "insr", "--out", str(tmp_path), *extra, *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
