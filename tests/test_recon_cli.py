"""End to end: train a few steps, stop, resume, evaluate, render — through the CLI and the API."""

import json

import pytest
import torch

from omnifield.apps.recon.run import Run
from omnifield.apps.recon.trainer import Trainer
from omnifield.cli import main
from omnifield.data.blender import load_blender
from omnifield.data.scene import ScenePoints
from omnifield.data.sparse_depth import SparseDepth
from tests.conftest import lego_subset

TINY = [
    "--set", "field.encoding.log2_hashmap_size=12", "--set", "field.encoding.n_levels=4",
    "--set", "field.encoding.max_resolution=64", "--set", "renderer.grid.resolution=32",
    "--set", "renderer.n_steps_per_diagonal=128", "--downscale", "8",
    "--batch-rays", "256", "--target-samples", "0",
]


@pytest.fixture
def tiny_scene(tmp_path):
    """Lego with 6 training and 2 test views."""
    return lego_subset(tmp_path / "scene", {"train": 6, "test": 2})


def test_train_resume_eval_render(tiny_scene, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(tiny_scene), "--out", str(out), "--steps", "8", "--no-eval", *TINY]) == 0
    run, _, meta = Run.open(out)
    assert meta["step"] == 8
    # lego has alpha masks: "auto" leaves pose refinement and appearance codes off
    assert run.camera_opt is None and run.train_config.camera_opt == "off" and run.field.appearance is None
    # a second train into the same folder without --resume is refused
    assert main(["train", str(tiny_scene), "--out", str(out), "--steps", "8", *TINY]) == 2
    assert "pass --resume" in capsys.readouterr().err
    # a resumed run keeps its settings: another value is refused, naming both; the run's own values pass
    resume = ["train", str(tiny_scene), "--out", str(out), "--steps", "12", "--resume"]
    assert main([*resume, "--lr", "0.005"]) == 2
    err = capsys.readouterr().err
    assert "--lr 0.005" in err and "the run has 0.01" in err and "keeps its own settings" in err
    assert main([*resume, "--set", "field.encoding.n_levels=8"]) == 2
    assert "changes the field settings" in capsys.readouterr().err
    assert main([*resume, "--scene-type", "unbounded"]) == 2
    assert "the run has 'object'" in capsys.readouterr().err
    assert main([*resume, *TINY, "--scene-type", "object"]) == 0
    _, _, meta = Run.open(out)
    assert meta["step"] == 12
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_views"] == 2 and 5.0 < metrics["psnr"] < 60.0 and 0.0 < metrics["ssim"] <= 1.0
    assert (out / "renders" / "test" / "r_0.png").exists() and (out / "renders" / "test" / "r_0_depth.png").exists()
    assert main(["eval", str(out)]) == 0
    assert main(["render", str(out), "--orbit-only", "--frames", "3"]) == 0
    assert any(p.name.startswith("orbit.") for p in out.iterdir())
    # --out sends what eval and render write elsewhere and leaves the run folder as it was
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    elsewhere = tmp_path / "elsewhere"
    assert main(["eval", str(out), "--out", str(elsewhere)]) == 0
    assert main(["render", str(out), "--orbit-only", "--frames", "2", "--out", str(elsewhere)]) == 0
    assert json.loads((elsewhere / "metrics.json").read_text())["n_views"] == 2
    assert (elsewhere / "renders" / "test" / "r_0.png").exists()
    assert any(p.name.startswith("orbit.") for p in elsewhere.iterdir())
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    (tmp_path / "a_file").write_text("x")
    assert main(["eval", str(out), "--out", str(tmp_path / "a_file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"loss", "psnr", "rays_per_s", "samples_per_ray", "lr"} <= set(log[0])


@pytest.fixture
def bitwise_repeatable(monkeypatch):
    """The torch twins in deterministic mode: runs repeat bit for bit."""
    monkeypatch.setenv("OMNIFIELD_BACKEND", "torch")
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


PROPOSAL = ["--sampler", "proposal", "--set", "renderer.n_samples=8", "--set", "renderer.proposal_samples=16,8",
            "--set", "renderer.proposal_resolutions=32,64"]


POSES_AND_CODES = ["--camera-opt", "SE3", "--appearance-dim", "4"]
DEPTH = ["sparse depth"]  # not an option: the test gives the trainer depth samples of points in the box


@pytest.mark.parametrize("features", [[], POSES_AND_CODES, PROPOSAL, DEPTH],
                         ids=["plain", "poses+appearance", "proposal", "sparse depth"])
def test_resume_reproduces_uninterrupted_training(tiny_scene, tmp_path, bitwise_repeatable, features):
    data = load_blender(tiny_scene, "train", 8)
    depths = None
    if features == DEPTH:
        xyz = torch.rand(50, 3, generator=torch.Generator().manual_seed(0)) - 0.5
        tracks = torch.stack(torch.meshgrid(torch.arange(50), torch.arange(6), indexing="ij"), -1).reshape(-1, 2)
        depths = SparseDepth.from_tracks(ScenePoints(xyz, xyz, tracks), data.cameras)

    def make(path):
        assert main(["train", str(tiny_scene), "--out", str(path), "--steps", "1", "--no-eval", *TINY,
                     *(features if features != DEPTH else [])]) == 0
        run, _, _ = Run.open(path)
        run.train_config.steps = 10
        run.train_config.depth_weight = 0.1 if features == DEPTH else 0.0
        fresh = Run.create(path, run.method, run.field_config, run.renderer_config, run.train_config, run.data_dir,
                           run.downscale, data)
        torch.manual_seed(0)
        return fresh

    straight = Trainer(make(tmp_path / "a"), data, progress=False, sparse_depth=depths)
    straight.fit()

    def stop_at_5(run, step):
        if step == 5:
            raise KeyboardInterrupt
        return {}

    interrupted = Trainer(make(tmp_path / "b"), data, eval_fn=stop_at_5, eval_every=1, progress=False,
                          sparse_depth=depths)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    run, tensors, meta = Run.open(tmp_path / "b")
    assert meta["step"] == 5
    resumed = Trainer(run, data, progress=False)  # the depth samples come back from the checkpoint
    resumed.resume(tensors, meta)
    if features == DEPTH:
        assert torch.equal(resumed.sparse_depth.uv, depths.uv) and torch.equal(resumed.sparse_depth.depth, depths.depth)
    resumed.fit()
    for (name, a), (_, b) in zip(straight.run.field.state_dict().items(), resumed.run.field.state_dict().items()):
        assert torch.equal(a, b), name
    renderer_a, renderer_b = straight.run.renderer.state_dict(), resumed.run.renderer.state_dict()
    assert renderer_a.keys() == renderer_b.keys()
    for name in renderer_a:  # the occupancy grid, or the proposal fields, continued bit for bit too
        assert torch.equal(renderer_a[name], renderer_b[name]), name
    if features == PROPOSAL:  # the proposal fields trained (from the interlevel loss) and were checkpointed
        fresh = Run.create(tmp_path / "c", "hashgrid", run.field_config, run.renderer_config, run.train_config, "")
        table = "proposals.0.encoding.table"
        assert table in renderer_b and not torch.equal(renderer_b[table], fresh.renderer.state_dict()[table])
    if features == POSES_AND_CODES:  # the pose corrections moved and continued bit for bit too
        assert resumed.run.camera_opt.deltas.abs().sum() > 0
        assert torch.equal(straight.run.camera_opt.deltas, resumed.run.camera_opt.deltas)
        assert torch.equal(straight.run.camera_opt.c2w, resumed.run.camera_opt.c2w)
        # training views re-open with their refined poses and own codes; held-out views keep their poses
        cameras, codes = resumed.run.training_views(data.cameras)
        assert torch.equal(cameras.c2w, resumed.run.camera_opt.refined_c2w().detach())
        assert not torch.equal(cameras.c2w, data.cameras.c2w) and codes.shape == (6, 4)
        assert main(["eval", str(tmp_path / "b"), "--split", "train"]) == 0


def test_cli_errors_exit_2_without_traceback(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "data folder not found" in err and "Traceback" not in err
    assert main(["eval", str(tmp_path / "norun")]) == 2
    assert main(["train", str(tmp_path), "--method", "nope"]) == 2
    for bad, says in ((["--set", "train.camera_opt=SO3"], "camera_opt must be one of"),
                      (["--appearance-dim", "-3"], "appearance_dim must be")):
        assert main(["train", str(tmp_path), *bad]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err


def test_device_choice_is_checked(tiny_scene, tmp_path, capsys):
    args = ["train", str(tiny_scene), "--out", str(tmp_path / "run"), "--steps", "2", "--no-eval", *TINY]
    assert main([*args, "--device", "tpu"]) == 2
    assert "expected auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda"]) == 2
        assert "no CUDA device is available" in capsys.readouterr().err
    assert main([*args, "--device", "cpu"]) == 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_resume_and_eval_on_cuda(tiny_scene, tmp_path):
    out = tmp_path / "run"
    common = [str(tiny_scene), "--out", str(out), "--no-eval", *TINY, "--device", "cuda"]
    assert main(["train", *common, "--steps", "6"]) == 0
    assert main(["train", *common, "--steps", "10", "--resume"]) == 0
    assert main(["eval", str(out), "--device", "cuda"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_views"] == 2 and 5.0 < metrics["psnr"] < 60.0
    run, _, meta = Run.open(out)  # a GPU-trained run re-opens on the CPU
    assert meta["step"] == 10 and run.device.type == "cpu"
