"""Crash safety of ``omnifield train``: SIGKILL mid-run and inside a checkpoint write, then resume (which
removes the killed write's leftovers, and nothing else); Ctrl-C (SIGINT) saves a checkpoint and exits with
code 130. Also: a diverging loss or a full disk stops the run with one clear line and keeps the last good
checkpoint.

The runs under test write their output to files, not to pipes: the progress bar writes a line per step, so
a pipe that nobody reads fills up and stalls the run. Waits are generous (a loaded machine starts a process
slowly) and poll gently, except the wait for a write in progress, which must catch a short window.
"""

import re
import signal
import sys
from pathlib import Path

import pytest
import torch

from omnifield.apps.recon.run import CHECKPOINT, Run
from omnifield.cli import main
from omnifield.io.checkpoint import load_checkpoint
from tests._processes import checkpoint_step, output, running, stop, stop_when, wait_until
from tests.test_recon_cli import TINY, tiny_scene  # noqa: F401 - fixture re-used

EVERY_STEP = ["--set", "train.checkpoint_every_s=0", "--set", "train.log_every=1", "--no-eval"]
FAST = ["--batch-rays", "64", "--set", "renderer.n_steps_per_diagonal=32"]


def _temp_files(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.name.startswith(f".{CHECKPOINT}.")] if out.is_dir() else []


def _field(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tensors.items() if k.startswith(("field/", "renderer/"))}


def test_sigkill_inside_checkpoint_write_then_resume_then_sigint(tiny_scene, tmp_path):  # noqa: F811
    out, log = tmp_path / "run", tmp_path / "log"
    first = ["train", str(tiny_scene), "--out", str(out), "--steps", "100000", *TINY, *FAST, *EVERY_STEP]
    again = ["train", str(tiny_scene), "--out", str(out), "--steps", "100000", "--resume", *EVERY_STEP]
    # kill the moment a checkpoint write is in progress (its temp file exists), until one lands inside
    for args in [first] + [again] * 199:
        with running(args, log) as proc:
            wait_until(lambda: (out / CHECKPOINT).is_file(), proc, log)
            wait_until(lambda: bool(_temp_files(out)), proc, log, poll_s=0.0005)
            stop(proc)
        if _temp_files(out):
            break
    assert proc.returncode == -signal.SIGKILL and _temp_files(out), "never killed inside a write"
    # what safetensors' own writer left when killed in earlier versions, and a user's file of a similar name
    (out / ".tmpK7q2Wz").write_bytes((out / CHECKPOINT).read_bytes()[:4096])
    (out / ".tmpnotes").write_text("mine")

    # the kept checkpoint is the last complete one: loads cleanly, weights intact
    tensors, meta = load_checkpoint(out / CHECKPOINT)
    step = meta["step"]
    assert step >= 1
    kept = _field(tensors)
    assert all(torch.isfinite(v.float()).all() for v in kept.values())

    # resume without further steps: the resumed run holds exactly the checkpoint's weights
    assert main(["train", str(tiny_scene), "--out", str(out), "--steps", str(step), "--resume", "--no-eval"]) == 0
    assert not _temp_files(out) and not (out / ".tmpK7q2Wz").exists() and (out / ".tmpnotes").read_text() == "mine"
    resumed, meta2 = load_checkpoint(out / CHECKPOINT)
    assert meta2["step"] == step
    assert set(_field(resumed)) == set(kept)
    assert all(torch.equal(resumed[k], kept[k]) for k in kept)

    # continue, then Ctrl-C: a checkpoint is saved after the last finished step and the exit code is 130
    proc = stop_when(lambda: checkpoint_step(out / CHECKPOINT) >= step + 2, again, log, sig=signal.SIGINT)
    stdout, err = output(log)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "omnifield: interrupted" in err
    run, _, meta3 = Run.open(out)
    assert meta3["step"] >= step + 2
    assert f"checkpoint at step {meta3['step']} saved" in stdout


def test_nan_loss_stops_with_one_line_and_keeps_last_good_checkpoint(tiny_scene, tmp_path, capsys,  # noqa: F811
                                                                       monkeypatch):
    from omnifield.apps.recon.trainer import Trainer

    clean = Trainer._extra_losses
    poisoned = {}

    def nan_from_step_3(self, pred, target):
        if self.step >= 3:
            poisoned.setdefault("at", self.step)
            return torch.tensor(float("nan"))
        return clean(self, pred, target)

    monkeypatch.setattr(Trainer, "_extra_losses", nan_from_step_3)
    out = tmp_path / "run"
    code = main(["train", str(tiny_scene), "--out", str(out), "--steps", "10", *TINY, *FAST, *EVERY_STEP])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and poisoned["at"] == 3
    assert err[-1].startswith("omnifield: error: training diverged at step 3 (loss is nan)")
    assert "--grad-clip" in err[-1] and not any("Traceback" in line for line in err)
    tensors, meta = load_checkpoint(out / CHECKPOINT)
    assert meta["step"] == 3
    assert all(torch.isfinite(v.float()).all() for v in _field(tensors).values())


def test_grad_clip_bounds_the_update(tiny_scene, tmp_path):  # noqa: F811
    """``--grad-clip c`` is stored in the run and the gradient the optimiser sees has norm <= c."""
    from omnifield.apps.recon.trainer import Trainer
    from omnifield.data.blender import load_blender

    assert main(["train", str(tiny_scene), "--out", str(tmp_path / "r"), "--steps", "1", "--no-eval", *TINY,
                 "--grad-clip", "1e-6"]) == 0
    run, _, _ = Run.open(tmp_path / "r")
    assert run.train_config.grad_clip == pytest.approx(1e-6)
    trainer = Trainer(run, load_blender(tiny_scene, "train", 8), progress=False)
    norms = []
    trainer.optimizer.step = lambda *a, **k: norms.append(  # record the clipped norm instead of stepping
        torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in run.field.parameters() if p.grad is not None])))
    trainer.engine.step_once()
    assert norms and float(norms[0]) <= 1e-6 * 1.001


def test_full_disk_during_training_is_one_line_and_keeps_the_checkpoint(tiny_scene, tmp_path, capsys,  # noqa: F811
                                                                       monkeypatch):
    import errno

    import omnifield.io.atomic as atomic

    monkeypatch.setenv("OMNIFIELD_BACKEND", "torch")
    out = tmp_path / "run"
    assert main(["train", str(tiny_scene), "--out", str(out), "--steps", "2", *TINY, *FAST, *EVERY_STEP]) == 0
    capsys.readouterr()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "open", full, raising=False)  # the disk is full: no atomic write gets through
    code = main(["train", str(tiny_scene), "--out", str(out), "--steps", "4", "--resume", *EVERY_STEP])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not any("Traceback" in line for line in err)
    assert re.fullmatch(rf"omnifield: error: {re.escape(str(out))}: cannot write [\w.]+: no space left on device "
                        r"\(the previous file is intact\)", err[-1]), err[-1]
    monkeypatch.undo()
    assert load_checkpoint(out / CHECKPOINT)[1]["step"] == 2 and Run.open(out)[2]["step"] == 2
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_the_program_exits_without_a_final_collection(tmp_path, monkeypatch, capsys):
    """Run as the program, ``main`` freezes the collector's objects, so the interpreter's exit (after Ctrl-C
    too) skips a full collection that takes tens of seconds on a loaded machine; called from Python, it does not."""
    import gc

    missing = str(tmp_path / "missing")
    try:
        assert main(["train", missing, "--out", str(tmp_path / "a")]) == 2 and gc.get_freeze_count() == 0
        monkeypatch.setattr(sys, "argv", ["omnifield", "train", missing, "--out", str(tmp_path / "b")])
        assert main() == 2 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert "omnifield: error:" in capsys.readouterr().err
