"""Every registered radiance-field preset builds and trains through the shared renderer and trainer."""

import math
from pathlib import Path

import pytest
import torch

from omnifield.apps.recon.config import TrainConfig
from omnifield.apps.recon.run import Run
from omnifield.apps.recon.trainer import Trainer
from omnifield.config import replace_config
from omnifield.data.blender import load_blender
from omnifield.fields import field_config, field_names
from omnifield.fields.cam import CAMConfig
from omnifield.fields.frequency import FrequencyConfig
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.neurbf import NeuRBFConfig
from omnifield.fields.triplane import TriPlaneConfig
from omnifield.renderers.occupancy import OccupancyGridConfig
from omnifield.renderers.volume import VolumeRendererConfig


def _tiny(cfg):
    """Shrink a preset's encoding (and CAM grids) so that ten steps take a moment."""
    enc = cfg.encoding
    if isinstance(enc, HashGridConfig):
        enc = replace_config(enc, n_levels=4, log2_hashmap_size=12, max_resolution=64)
    elif isinstance(enc, TriPlaneConfig):
        enc = replace_config(enc, resolutions=(16, 32))
    elif isinstance(enc, NeuRBFConfig):
        enc = replace_config(enc, n_bases=256, grid=HashGridConfig(n_levels=2, log2_hashmap_size=10, max_resolution=32))
    elif isinstance(enc, FrequencyConfig):
        enc = replace_config(enc, n_frequencies=4)
    dec = cfg.density_decoder
    if isinstance(dec, CAMConfig):
        dec = replace_config(dec, resolution=8, base=replace_config(dec.base, width=32))
    elif hasattr(dec, "width"):
        dec = replace_config(dec, width=32)
    return replace_config(cfg, encoding=enc, density_decoder=dec)


def test_backend_presets_are_registered():
    assert {"triplane", "neurbf", "hashgrid_cam", "mlp_cam"} <= set(field_names())


@pytest.fixture(scope="module")
def lego_tiny():
    return load_blender(Path(__file__).resolve().parents[1] / "data" / "lego_200", "train", downscale=8)


@pytest.mark.parametrize("name", ["hashgrid", "mlp", "triplane", "neurbf", "hashgrid_cam", "mlp_cam"])
def test_every_backend_trains_ten_steps_on_lego(name, lego_tiny, tmp_path):
    torch.manual_seed(0)
    renderer = VolumeRendererConfig(n_steps_per_diagonal=48, grid=OccupancyGridConfig(resolution=16))
    train = TrainConfig(steps=10, batch_rays=64, target_samples=0, checkpoint_every_s=1e9, log_every=1)
    run = Run.create(tmp_path / name, name, _tiny(field_config(name)), renderer, train, "lego", 8)
    before = {k: v.clone() for k, v in run.field.state_dict().items()}
    trainer = Trainer(run, lego_tiny, progress=False)
    trainer.fit()  # raises on a non-finite loss
    assert trainer.step == 10
    stats = trainer.train_step(1.0)
    assert math.isfinite(stats["loss"]) and stats["loss"] > 0
    changed = [k for k, v in run.field.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoding.") or ".grids" in k for k in changed) or name == "mlp"
    assert any("decoder" in k for k in changed)
