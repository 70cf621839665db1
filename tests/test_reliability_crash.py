"""Crash safety of ``omnifield train``: SIGKILL mid-run and inside a checkpoint write, then resume;
Ctrl-C (SIGINT) saves a checkpoint and exits with code 130. Also: a diverging loss stops the run
with one clear line and keeps the last good checkpoint."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from omnifield.apps.recon.run import CHECKPOINT, Run
from omnifield.cli import main
from omnifield.io.checkpoint import load_checkpoint
from tests.test_recon_cli import TINY, tiny_scene  # noqa: F401 - fixture re-used

REPO = Path(__file__).resolve().parents[1]
EVERY_STEP = ["--set", "train.checkpoint_every_s=0", "--set", "train.log_every=1", "--no-eval"]
FAST = ["--batch-rays", "64", "--set", "renderer.n_steps_per_diagonal=32"]


def _start(args: list[str]) -> subprocess.Popen:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])  # this checkout's package first
    env = {**os.environ, "OMNIFIELD_BACKEND": "torch", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    return subprocess.Popen([sys.executable, "-m", "omnifield", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _temp_files(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.name.startswith(f".{CHECKPOINT}.")] if out.is_dir() else []


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"train exited early ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the training run")
        time.sleep(0.0005)


def _field(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tensors.items() if k.startswith(("field/", "renderer/"))}


def test_sigkill_inside_checkpoint_write_then_resume_then_sigint(tiny_scene, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    proc = _start(["train", str(tiny_scene), "--out", str(out), "--steps", "100000", *TINY, *FAST, *EVERY_STEP])
    _wait_for(lambda: (out / CHECKPOINT).is_file(), proc)
    # kill the moment a checkpoint write is in progress (its temp file exists), until one lands inside
    for _ in range(200):
        _wait_for(lambda: bool(_temp_files(out)), proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if _temp_files(out):
            break
        proc = _start(["train", str(tiny_scene), "--out", str(out), "--steps", "100000", "--resume", *EVERY_STEP])
    assert proc.returncode == -signal.SIGKILL and _temp_files(out), "never killed inside a write"

    # the kept checkpoint is the last complete one: loads cleanly, weights intact
    tensors, meta = load_checkpoint(out / CHECKPOINT)
    step = meta["step"]
    assert step >= 1
    kept = _field(tensors)
    assert all(torch.isfinite(v.float()).all() for v in kept.values())

    # resume without further steps: the resumed run holds exactly the checkpoint's weights
    assert main(["train", str(tiny_scene), "--out", str(out), "--steps", str(step), "--resume", "--no-eval"]) == 0
    resumed, meta2 = load_checkpoint(out / CHECKPOINT)
    assert meta2["step"] == step
    assert set(_field(resumed)) == set(kept)
    assert all(torch.equal(resumed[k], kept[k]) for k in kept)

    # continue, then Ctrl-C: a checkpoint is saved after the last finished step and the exit code is 130
    proc = _start(["train", str(tiny_scene), "--out", str(out), "--steps", "100000", "--resume", *EVERY_STEP])
    _wait_for(lambda: load_checkpoint(out / CHECKPOINT)[1]["step"] >= step + 2, proc)
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=60)
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
    trainer.train_step(0.0)
    assert norms and float(norms[0]) <= 1e-6 * 1.001
