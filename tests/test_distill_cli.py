"""``omnifield convert``: field -> field -> field and field -> splat on a tiny scene; run folders stay valid."""

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from omnifield.apps.recon.config import TrainConfig
from omnifield.apps.recon.run import Run
from omnifield.cli import main
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.radiance import RadianceFieldConfig
from omnifield.renderers.cameras import look_at
from omnifield.renderers.volume import VolumeRendererConfig

AABB = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)


def write_scene(root, size=12):
    """A Blender-format scene: 4 train and 2 test views of random RGBA images."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        angles = torch.arange(n) * 2 * math.pi / n + (0.3 if split == "test" else 0.0)
        eye = torch.stack([2.5 * torch.cos(angles), 2.5 * torch.sin(angles), torch.full((n,), 0.6)], -1)
        c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
        (root / split).mkdir(parents=True)
        frames = []
        for i in range(n):
            iio.imwrite(root / split / f"r_{i}.png", rng.integers(0, 256, (size, size, 4), dtype=np.uint8))
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w[i].tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.9, "frames": frames}))


@pytest.fixture
def teacher_run(tmp_path):
    data = tmp_path / "scene"
    write_scene(data)
    enc = HashGridConfig(n_levels=4, n_features_per_level=2, base_resolution=4, max_resolution=16, init_scale=1.0)
    cfg = RadianceFieldConfig(encoding=enc, density_decoder=MLPConfig(width=16, n_hidden_layers=1),
                              color_decoder=MLPConfig(width=16, n_hidden_layers=1), sh_degree=2, aabb=AABB)
    run = Run.create(tmp_path / "teacher", "hashgrid", cfg, VolumeRendererConfig(sampler="uniform", n_samples=16),
                     TrainConfig(steps=1), str(data))
    run.save(1, {}, {})
    return tmp_path / "teacher"


def test_convert_there_and_back_keeps_valid_runs(teacher_run, capsys):
    tri = teacher_run.parent / "tri"
    assert main(["convert", str(teacher_run), "--method", "triplane", "--steps", "30", "--batch-rays", "128",
                 "--out", str(tri), "--set", "field.encoding.resolutions=16", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "teacher" in printed and "student" in printed and "PSNR" in printed
    run, _, meta = Run.open(tri)
    assert run.method == "triplane" and meta["step"] == 30 and meta["distilled_from"] == str(teacher_run)
    assert run.field_config.encoding.resolutions == (16,) and run.field_config.aabb == AABB
    assert run.field_config.color_decoder == MLPConfig(width=16, n_hidden_layers=1)  # the teacher's head
    teacher, _, _ = Run.open(teacher_run)
    assert torch.equal(run.renderer.grid.occupancy, teacher.renderer.grid.occupancy)
    metrics = json.loads((tri / "metrics.json").read_text())
    assert math.isfinite(metrics["psnr"]) and math.isfinite(metrics["teacher_psnr"])
    back = teacher_run.parent / "back"
    assert main(["convert", str(tri), "--method", "hashgrid", "--steps", "20", "--batch-rays", "128", "--al",
                 "--out", str(back), "--set", "field.encoding.n_levels=2", "--quiet"]) == 0
    again, _, _ = Run.open(back)
    assert again.method == "hashgrid" and again.field_config.encoding.n_levels == 2
    assert main(["eval", str(back)]) == 0  # the converted run is an ordinary run folder


def test_a_proposal_sampled_teacher_lends_its_proposal_fields_to_the_student(tmp_path):
    """Conversion samples where the teacher's proposal fields put its weight, and the student run renders
    with those same proposal fields (it describes the same scene)."""
    data = tmp_path / "scene"
    write_scene(data)
    enc = HashGridConfig(n_levels=4, n_features_per_level=2, base_resolution=4, max_resolution=16)
    cfg = RadianceFieldConfig(encoding=enc, density_decoder=MLPConfig(width=16, n_hidden_layers=1),
                              color_decoder=MLPConfig(width=16, n_hidden_layers=1), sh_degree=2, aabb=AABB)
    renderer = VolumeRendererConfig(sampler="proposal", n_samples=8, proposal_samples=(16, 8),
                                    proposal_resolutions=(16, 32))
    teacher = Run.create(tmp_path / "teacher", "hashgrid", cfg, renderer, TrainConfig(steps=1), str(data))
    with torch.no_grad():  # proposal fields that are not at their initial values
        for p in teacher.renderer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    teacher.save(1, {}, {})
    out = tmp_path / "tri"
    assert main(["convert", str(tmp_path / "teacher"), "--method", "triplane", "--steps", "5", "--batch-rays", "64",
                 "--out", str(out), "--set", "field.encoding.resolutions=16", "--quiet"]) == 0
    student, _, _ = Run.open(out)
    assert student.renderer.cfg.sampler == "proposal"
    for (name, a), (_, b) in zip(teacher.renderer.state_dict().items(), student.renderer.state_dict().items()):
        assert torch.equal(a, b), name
    assert main(["eval", str(out)]) == 0


def test_convert_to_splat_writes_a_splat_run(teacher_run, capsys):
    from omnifield.io.splat_run import load_splat_run

    out = teacher_run.parent / "splat"
    assert main(["convert", str(teacher_run), "--method", "splat", "--steps", "3", "--n-gaussians", "40",
                 "--out", str(out), "--quiet"]) == 0
    scene = load_splat_run(out)
    assert len(scene) == 40
    assert "student" in capsys.readouterr().out
    back = teacher_run.parent / "from-splat"  # Gaussians -> field through density/rgb
    assert main(["convert", str(out), "--method", "mlp", "--steps", "5", "--batch-rays", "64", "--out", str(back),
                 "--set", "field.encoding.n_frequencies=2", "--quiet"]) == 0
    run, _, meta = Run.open(back)
    assert run.method == "mlp" and meta["distilled_from"] == str(out)
    assert "teacher" in capsys.readouterr().out


def test_convert_reports_bad_input_on_one_line(tmp_path, teacher_run, capsys):
    assert main(["convert", str(tmp_path / "missing"), "--method", "mlp"]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["convert", str(teacher_run), "--method", "mlp", "--set", "train.lr=1"]) == 2
    assert "field.*" in capsys.readouterr().err
    assert main(["convert", str(teacher_run), "--method", "mlp", "--out", str(teacher_run)]) == 2
    assert "holds a hashgrid NeRF run; refusing to write an mlp NeRF run there" in capsys.readouterr().err


def test_convert_killed_then_resumed_continues_from_its_checkpoint(teacher_run, tmp_path):
    """SIGKILL mid-distillation, then ``--resume``: the log continues right after the checkpoint's step."""
    from tests._processes import checkpoint_step, kill_at_checkpoint

    out = tmp_path / "student"
    common = ["--method", "mlp", "--batch-rays", "64", "--out", str(out), "--quiet",
              "--set", "field.density_decoder.width=16", "--set", "loop.checkpoint_every_s=0",
              "--set", "loop.log_every=1"]
    kept = kill_at_checkpoint(["convert", str(teacher_run), "--steps", "100000", *common], out / "checkpoint.safetensors",
                              tmp_path / "log")
    logged = len((out / "log.jsonl").read_text().splitlines())
    budget = kept + 3
    assert main(["convert", str(teacher_run), "--steps", str(budget), "--resume", "--eval-views", "1", *common]) == 0
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()[logged:]]
    assert [s for s in steps if s > kept][:3] == [kept + 1, kept + 2, kept + 3]
    assert checkpoint_step(out / "checkpoint.safetensors") == budget


def test_convert_to_splat_killed_then_resumed_continues_from_its_checkpoint(teacher_run, tmp_path, capsys):
    """SIGKILL mid-conversion to splat, then ``convert --resume``: the log continues after the checkpoint's
    step; ``train --resume`` refuses the folder on one line (its state is a conversion's)."""
    from tests._processes import checkpoint_step, kill_at_checkpoint

    out = tmp_path / "splat"
    common = ["--method", "splat", "--n-gaussians", "40", "--teacher-views", "3", "--out", str(out), "--quiet",
              "--set", "loop.checkpoint_every_s=0", "--set", "loop.log_every=1"]
    kept = kill_at_checkpoint(["convert", str(teacher_run), "--steps", "100000", *common],
                              out / "checkpoint.safetensors", tmp_path / "log")
    logged = len((out / "log.jsonl").read_text().splitlines())
    budget = kept + 3
    assert main(["convert", str(teacher_run), "--steps", str(budget), "--resume", "--eval-views", "1", *common]) == 0
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()[logged:]]
    assert [e["step"] for e in lines if e["step"] > kept][:3] == [kept + 1, kept + 2, kept + 3]
    assert lines[0]["teacher_renders"] == 1  # the resumed process renders again what it needs
    assert checkpoint_step(out / "checkpoint.safetensors") == budget
    capsys.readouterr()
    assert main(["train", str(teacher_run.parent / "scene"), "--method", "splat", "--resume", "--out", str(out)]) == 2
    assert "cannot continue" in capsys.readouterr().err


def test_convert_to_splat_refuses_no_teacher_views_before_any_work(teacher_run, tmp_path, capsys):
    out = tmp_path / "splat"
    assert main(["convert", str(teacher_run), "--method", "splat", "--teacher-views", "0", "--out", str(out)]) == 2
    assert "--teacher-views" in capsys.readouterr().err and not out.exists()
