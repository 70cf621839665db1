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
    stats = trainer.engine.step_once()
    assert math.isfinite(stats["loss"]) and stats["loss"] > 0
    changed = [k for k, v in run.field.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoding.") or ".grids" in k for k in changed) or name == "mlp"
    assert any("decoder" in k for k in changed)


def test_neurbf_bases_move_onto_the_coarse_density(lego_tiny, tmp_path):
    """At the end of the occupancy warm-up the trainer places NeuRBF's centres by k-means on the density."""
    import dataclasses

    from omnifield.apps.recon.config import TrainConfig
    from omnifield.apps.recon.run import Run
    from omnifield.apps.recon.trainer import Trainer
    from omnifield.fields.registry import field_config
    from omnifield.renderers.occupancy import OccupancyGridConfig
    from omnifield.renderers.volume import VolumeRendererConfig

    cfg = field_config("neurbf")
    cfg = dataclasses.replace(cfg, encoding=dataclasses.replace(cfg.encoding, n_bases=64))
    run = Run.create(tmp_path, "neurbf", cfg, VolumeRendererConfig(grid=OccupancyGridConfig(resolution=16)),
                     TrainConfig(steps=1), "", 1)
    trainer = Trainer(run, lego_tiny, progress=False)
    grid = run.renderer.grid
    dense = torch.zeros(16, 16, 16, dtype=torch.bool)
    dense[2:6, 9:14, 4:8] = True  # a known blob of density
    grid.occupancy.copy_(dense)
    grid.values.copy_(dense.reshape(-1).float())
    assert trainer.place_bases_on_density()
    centres = run.field.encoding.centers * 16
    inside = ((centres[:, 0] >= 2) & (centres[:, 0] <= 6) & (centres[:, 1] >= 9) & (centres[:, 1] <= 14)
              & (centres[:, 2] >= 4) & (centres[:, 2] <= 8))
    assert bool(inside.all())
    assert not Trainer(Run.create(tmp_path / "h", "hashgrid", field_config("hashgrid"), VolumeRendererConfig(),
                                  TrainConfig(steps=1), "", 1), lego_tiny, progress=False).place_bases_on_density()


def test_weight_decay_reaches_decoder_matrices_but_not_cam_grids():
    from omnifield.apps.recon.config import TrainConfig
    from omnifield.apps.recon.trainer import make_optimizer
    from omnifield.fields.registry import build_field, field_config

    field = build_field(field_config("hashgrid_cam"))
    decayed = {id(p) for g in make_optimizer(field, TrainConfig()).param_groups if g["weight_decay"] > 0
               for p in g["params"]}
    names = {n for n, p in field.named_parameters() if id(p) in decayed}
    assert names and all("decoder" in n and n.endswith("weight") for n in names)
    assert not any(n.endswith("grids") for n in names)
