"""The image, SDF and navigation-world fits on the training engine: a run stopped by Ctrl-C and continued
from its checkpoint ends with exactly the weights of a run that went straight through; ``omnifield fit``
killed with SIGKILL continues with ``--resume`` from the checkpoint's step; the old ``--seconds`` budget."""

import json
from pathlib import Path

import pytest
import torch
import trimesh

from omnifield.apps.fit.image import FitImageConfig, fit_image
from omnifield.apps.fit.sdf import FitSDFConfig, fit_sdf
from omnifield.apps.nav.scenes import pillar_room
from omnifield.apps.nav.world_fit import WorldFitConfig, fit_field_to_world
from omnifield.cli import main
from omnifield.engine import LoopConfig
from omnifield.engine.regression import FieldFit
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.image_field import ImageFieldConfig
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.radiance import RadianceFieldConfig
from omnifield.fields.sdf_field import SDFFieldConfig
from omnifield.io.checkpoint import load_checkpoint, save_checkpoint
from tests._processes import ctrl_c_at, kill_at_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY_GRID = HashGridConfig(n_levels=4, log2_hashmap_size=10, base_resolution=4, max_resolution=32)
TINY_MLP = MLPConfig(width=16, n_hidden_layers=1)
STEPS, STOP = 8, 3


def _image() -> torch.Tensor:
    v, u = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 16), indexing="ij")
    return torch.stack([u, v, 0.5 + 0.4 * torch.sin(6 * u) * torch.cos(4 * v)], dim=-1)


def _fit_image(loop, checkpoint, resume):
    cfg = FitImageConfig(batch_pixels=64, loop=loop)
    return fit_image(_image(), ImageFieldConfig(encoding=TINY_GRID, decoder=TINY_MLP), cfg, checkpoint, resume)["field"]


def _fit_sdf(loop, checkpoint, resume):
    cfg = FitSDFConfig(n_samples=2000, batch_points=256, loop=loop)
    field_cfg = SDFFieldConfig(encoding=TINY_GRID, decoder=TINY_MLP)
    return fit_sdf(trimesh.creation.icosphere(subdivisions=2, radius=0.5), field_cfg, cfg, checkpoint, resume)["field"]


def _fit_world(loop, checkpoint, resume):  # the cosine learning rate follows the budget: a resume must keep it
    torch.manual_seed(0)
    field = RadianceFieldConfig(encoding=TINY_GRID, density_decoder=TINY_MLP, color_decoder=TINY_MLP, sh_degree=1,
                                aabb=(-2.2, -2.2, -0.2, 2.2, 2.2, 2.2)).build()
    fit_field_to_world(pillar_room(n_pillars=2), field, WorldFitConfig(batch=128, loop=loop), checkpoint, {}, resume)
    return field


@pytest.fixture
def repeatable(monkeypatch):
    """Bit-for-bit repeatable training, so any difference is the resume's: the pure-torch twins on one
    thread (threaded gradient sums, such as the SDF's double backward, vary in their last bits)."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMNIFIELD_BACKEND", "torch")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("fit", [_fit_image, _fit_sdf, _fit_world], ids=["image", "sdf", "world"])
def test_ctrl_c_then_resume_equals_a_straight_run(fit, tmp_path, monkeypatch, repeatable):
    loop = LoopConfig(steps=STEPS, progress=False)
    straight = fit(loop, tmp_path / "straight.safetensors", None).state_dict()

    path = tmp_path / "cut.safetensors"
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        ctrl_c_at(patch, FieldFit, "training_step", step=STOP)
        fit(loop, path, None)
    tensors, meta = load_checkpoint(path)
    assert meta["step"] == STOP
    resumed = fit(loop, path, (tensors, meta)).state_dict()
    assert load_checkpoint(path)[1]["step"] == STEPS
    assert set(resumed) == set(straight)
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=name)
    moved = fit(LoopConfig(steps=STOP, progress=False), tmp_path / "short.safetensors", None).state_dict()
    assert any(not torch.equal(moved[k], straight[k]) for k in straight)  # the comparison can fail


def test_sigkill_then_resume_continues_from_the_checkpoint(tmp_path):
    out, log, budget = tmp_path / "fit", tmp_path / "log", 100_000
    src = str(REPO / "data" / "astronaut" / "astronaut.png")
    common = ["fit", "image", src, "--size", "16", "--params", "2000", "--out", str(out), "--quiet", "--threads", "1"]
    every_step = ["--set", "fit.loop.checkpoint_every_s=0", "--set", "fit.loop.log_every=1",
                  "--set", "fit.batch_pixels=64"]
    killed_at = kill_at_checkpoint([*common, "--steps", str(budget), *every_step], out / "checkpoint.safetensors", log)
    assert killed_at >= 3
    final = killed_at + 5
    before = len((out / "log.jsonl").read_text().splitlines())  # the killed run may have logged past its checkpoint
    assert main([*common, "--steps", str(final), "--resume", "--set", "fit.loop.log_every=1"]) == 0
    lines = (out / "log.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines[before:]]
    assert steps == list(range(killed_at + 1, final + 1)), steps  # continued from the checkpoint, not from 0
    assert load_checkpoint(out / "checkpoint.safetensors")[1]["step"] == final
    assert json.loads((out / "metrics.json").read_text())["steps"] == final


def test_old_seconds_budget_is_converted_to_minutes(tmp_path, capsys):
    src = str(REPO / "data" / "astronaut" / "astronaut.png")
    common = ["fit", "image", src, "--size", "16", "--params", "2000", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "a"), "--seconds", "0.05", "--steps", "0"]) == 0
    stored = json.loads((tmp_path / "a" / "config.json").read_text())["fit"]["loop"]
    assert stored["minutes"] == pytest.approx(0.05 / 60) and stored["steps"] == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--seconds", "1", "--minutes", "1"]) == 2
    assert main([*common, "--out", str(tmp_path / "c"), "--resume"]) == 2
    assert "no fit to resume" in capsys.readouterr().err
    # a fit written before fits could be resumed: its weights alone
    save_checkpoint(tmp_path / "d" / "checkpoint.safetensors", {"field/w": torch.zeros(1)},
                    {"config": {"field": {}, "fit": {"type": "fit_image", "steps": 3}}})
    assert main([*common, "--out", str(tmp_path / "d"), "--resume"]) == 2
    assert "holds no training state to continue" in capsys.readouterr().err
