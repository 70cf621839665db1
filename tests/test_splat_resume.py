"""Splat runs resume: bit for bit in-process (across densification, Compact-3DGS with RVQ on), Ctrl-C writes a
checkpoint, SIGKILL then ``train --method splat --resume`` continues from the checkpoint's step; settings
errors are one line; a checkpoint without a training state still opens but cannot continue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from omnifield.apps.splat import SplatTask
from omnifield.cli import main
from omnifield.io.checkpoint import load_checkpoint, save_checkpoint
from omnifield.io.splat_ply import load_splat_ply
from omnifield.io.splat_run import CHECKPOINT, load_splat_run
from tests._processes import ctrl_c_at, kill_at_checkpoint
from tests.test_splat_training import TINY, _train, tiny_data  # noqa: F401 - fixture re-used

pytestmark = pytest.mark.usefixtures("one_thread")
DENSE = {"refine_start": 5, "refine_every": 10, "densify_until": 0.9, "sh_interval": 15, "evaluate": False}


def _logged_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("compact", [False, True], ids=["3dgs", "compact"])
def test_interrupted_and_resumed_run_equals_the_straight_run(tiny_data, tmp_path, monkeypatch, compact):  # noqa: F811
    """Straight N steps == N/2 steps, Ctrl-C (checkpoint), re-open, N/2 more: every tensor of the final
    checkpoint equal (Gaussians, Adam moments, RNG states, density-control accumulators), with densification
    in both halves (the count changes before and after the checkpoint) and, for Compact-3DGS, RVQ on."""
    n = 24 if compact else 30
    kw = {**DENSE, **({"compact": True, "rvq_from": 0.25} if compact else {})}
    straight = tmp_path / "straight"
    _train(tiny_data, straight, steps=n, **kw)

    parted = tmp_path / "parted"
    with monkeypatch.context() as patch:
        ctrl_c_at(patch, SplatTask, "training_step", step=n // 2)
        with pytest.raises(KeyboardInterrupt):
            _train(tiny_data, parted, steps=n, **kw)
    half, meta = load_checkpoint(parted / CHECKPOINT)
    assert meta["step"] == n // 2 and meta["training"]["step"] == n // 2  # Ctrl-C wrote the checkpoint
    assert len(half["means"]) != 300  # densified before the checkpoint
    assert meta.get("use_rvq", False) == compact
    assert not (parted / "scene.ply").exists()
    metrics = _train(tiny_data, parted, steps=n, resume=True, **kw)
    assert metrics["steps"] == n

    a, meta_a = load_checkpoint(straight / CHECKPOINT)
    b, meta_b = load_checkpoint(parted / CHECKPOINT)
    assert set(a) == set(b)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert compact or len(b["means"]) != len(half["means"])  # densified after the checkpoint too
    assert meta_a["training"]["optimizer"] == meta_b["training"]["optimizer"]
    assert meta_b["training"]["refine_stop_iter"] == meta_a["training"]["refine_stop_iter"]
    assert meta_b.get("use_rvq", False) == compact
    assert _logged_steps(parted) == _logged_steps(straight) == [1] + list(range(10, n + 1, 10))
    assert len(load_splat_run(parted)) == len(b["means"])


def test_a_checkpoint_without_training_state_opens_but_does_not_resume(tiny_data, tmp_path, capsys):  # noqa: F811
    run = tmp_path / "run"
    _train(tiny_data, run, steps=3, evaluate=False)
    tensors, meta = load_checkpoint(run / CHECKPOINT)
    del meta["training"]  # as written by omnifield before splat runs resumed, or by convert --to splat
    save_checkpoint(run / CHECKPOINT, {k: v for k, v in tensors.items() if "/" not in k}, meta)
    assert len(load_splat_run(run)) == len(tensors["means"])
    code = main(["train", str(tiny_data), "--method", "splat", "--out", str(run), "--resume", "--steps", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "holds no training state" in err[0], err


@pytest.mark.parametrize("extra, message", [
    (["--set", "splat.densify_until=2"], "--densify-until, --rvq-from and --color-lr-decay-at must be fractions"),
    (["--set", "splat.nothing=1"], "splat has no option 'nothing'"),
    (["--set", "field.x=1"], "with --method splat, must start with splat. or loop."),
    (["--set", "loop.log_every=0"], "log_every >= 1"),
    (["--refine-every", "0"], "--refine-every and --reset-every must be >= 1"),
])
def test_bad_settings_exit_2_with_one_line(tiny_data, tmp_path, capsys, extra, message):  # noqa: F811
    code = main(["train", str(tiny_data), "--method", "splat", "--out", str(tmp_path / "run"), "--steps", "2", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_set_reaches_the_splat_config(tiny_data, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    assert main(["train", str(tiny_data), "--method", "splat", "--out", str(run), "--steps", "2", "--no-eval",
                 "--set", "splat.n_init=123", "--set", "loop.log_every=1"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["n_init"] == 123 and config["options"]["init"] == "random"
    assert len(load_checkpoint(run / CHECKPOINT)[0]["means"]) == 123
    assert _logged_steps(run) == [1, 2]


def test_sigkill_then_resume_continues_from_the_checkpoint(tiny_data, tmp_path):  # noqa: F811
    out, log, steps = tmp_path / "run", tmp_path / "log", 40
    aabb = [str(v) for v in TINY["aabb"]]
    argv = ["train", str(tiny_data), "--method", "splat", "--out", str(out), "--steps", str(steps), "--no-eval",
            "--n-init", "300", "--aabb", *aabb, "--refine-start", "5", "--refine-every", "10"]
    every_step = ["--set", "loop.checkpoint_every_s=0", "--set", "loop.log_every=1"]
    kept = kill_at_checkpoint([*argv, *every_step], out / CHECKPOINT, log, at_least=12)  # past the first densification
    assert 12 <= kept < steps
    logged_before = len(_logged_steps(out))

    assert main([*argv, "--resume", "--n-init", "301"]) == 2  # a setting other than the run's is refused
    assert main([*argv, "--resume", "--set", "loop.checkpoint_every_s=60"]) == 0  # the run's own values pass
    logged = _logged_steps(out)[logged_before:]
    assert logged[0] == kept + 1 and logged[-1] == steps  # the resumed run starts past the checkpoint
    assert logged == list(range(kept + 1, steps + 1))  # the run's log_every (1) is kept on resume
    _, meta = load_checkpoint(out / CHECKPOINT)
    assert meta["step"] == steps and json.loads((out / "metrics.json").read_text())["steps"] == steps
    assert len(load_splat_ply(out / "scene.ply")) == len(load_splat_run(out))


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, capsys,  # noqa: F811
                                                                        monkeypatch):
    import omnifield.apps.splat.train as train_module

    clean, calls = train_module.photometric_loss, []

    def nan_from_the_sixth_step(pred, target):
        calls.append(1)
        return clean(pred, target) * (float("nan") if len(calls) > 5 else 1.0)

    monkeypatch.setattr(train_module, "photometric_loss", nan_from_the_sixth_step)
    run = tmp_path / "run"
    code = main(["train", str(tiny_data), "--method", "splat", "--out", str(run), "--steps", "10", "--no-eval",
                 "--n-init", "300", "--set", "loop.checkpoint_every_s=0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("omnifield: error: training diverged at step 5 (loss is nan)"), err
    assert not any("Traceback" in line for line in err) and not (run / "scene.ply").exists()
    tensors, meta = load_checkpoint(run / CHECKPOINT)
    assert meta["step"] == 5 and all(torch.isfinite(tensors[k]).all() for k in ("means", "sh_dc", "log_scales"))
