"""NeRF-MAE training under the engine: an interrupted run resumed in-process equals a straight run, and
``omnifield mae pretrain`` killed with SIGKILL continues from its checkpoint with ``--resume``."""

import json

import pytest
import torch

from omnifield.apps.mae.dataset import scene_grid, write_scene_grids
from omnifield.apps.mae.model import MAE3D, MAE3DConfig
from omnifield.apps.mae.runs import MODEL_FILE, TRAINING_FILE, load_model, save_model, segmenter_from_mae
from omnifield.apps.mae.scene import generate_scene
from omnifield.apps.mae.train import EpochBatches, PretrainConfig, pretrain_mae
from omnifield.cli import main
from omnifield.engine import LoopConfig
from omnifield.io.run_folder import checkpoint_meta
from tests._processes import checkpoint_step, ctrl_c_at, kill_at_checkpoint

TINY = MAE3DConfig(dim=24, depth=1, heads=2, decoder_dim=24, decoder_depth=1, decoder_heads=2)
SMALL = ["--dim", "24", "--depth", "1", "--heads", "2", "--threads", "1", "--batch", "2"]


@pytest.fixture(scope="module")
def grids():
    return torch.stack([torch.from_numpy(scene_grid(generate_scene(s), resolution=8).rgba) for s in range(3)])


def test_interrupted_pretraining_resumed_equals_a_straight_run(grids, tmp_path, monkeypatch):
    cfg = PretrainConfig(batch_size=2, lr=3e-3, seed=3)  # 3 grids, batches of 2: epochs straddle batches
    loop = LoopConfig(steps=7, log_every=2, progress=False, checkpoint_every_s=1e9)
    torch.manual_seed(0)
    straight = MAE3D(TINY)
    expected = pretrain_mae(straight, grids, cfg, loop, tmp_path / "straight")

    ctrl_c_at(monkeypatch, EpochBatches, "next", call=5)  # before step 4 (from 0)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        pretrain_mae(MAE3D(TINY), grids, cfg, loop, tmp_path / "run")
    monkeypatch.undo()
    assert checkpoint_meta(tmp_path / "run" / TRAINING_FILE)["step"] == 4
    torch.manual_seed(1)  # other initial weights and global RNG: everything must come from the checkpoint
    torch.rand(5)
    resumed = MAE3D(TINY)
    history = pretrain_mae(resumed, grids, cfg, loop, tmp_path / "run", resume=True)
    assert history == expected and len(history) == 7
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 4, 6]  # every second step and step 1, nothing logged twice


def test_resume_refuses_a_folder_without_training_or_of_another_kind(tmp_path, capsys):
    write_scene_grids(tmp_path / "g", range(3), resolution=8)
    assert main(["mae", "pretrain", str(tmp_path / "g"), "--out", str(tmp_path / "none"), "--resume", *SMALL]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    save_model(tmp_path / "seg", segmenter_from_mae(None, TINY, 3, seed=0), {"steps": 0})
    assert main(["mae", "pretrain", str(tmp_path / "g"), "--out", str(tmp_path / "seg"), *SMALL]) == 2
    assert "holds a segmenter model; refusing to write a mae model" in capsys.readouterr().err
    assert main(["mae", "pretrain", str(tmp_path / "g"), "--out", str(tmp_path / "x"), "--set", "loop.bogus=1",
                 *SMALL]) == 2
    assert "has no option 'bogus'" in capsys.readouterr().err


def test_sigkill_then_resume_continues_from_the_checkpoint(tmp_path):
    write_scene_grids(tmp_path / "g", range(3), resolution=8)
    out, log = tmp_path / "mae", tmp_path / "log"
    every_step = ["--set", "loop.checkpoint_every_s=0", "--set", "loop.log_every=1", "--quiet"]
    kept = kill_at_checkpoint(["mae", "pretrain", str(tmp_path / "g"), "--out", str(out), "--steps", "100000",
                               *SMALL, *every_step], out / TRAINING_FILE, log)
    logged = len((out / "log.jsonl").read_text().splitlines())
    assert kept >= 3 and not (out / MODEL_FILE).exists()

    budget = kept + 4
    assert main(["mae", "pretrain", str(tmp_path / "g"), "--out", str(out), "--steps", str(budget), "--resume",
                 *SMALL, *every_step]) == 0
    lines = (out / "log.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines[logged:]]
    assert steps == list(range(kept + 1, budget + 1))  # continued right after the checkpoint's step
    model, meta = load_model(out, "mae")
    assert meta["steps"] == budget and checkpoint_step(out / TRAINING_FILE) == budget
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(budget))
