"""Rendering in chunks bounded by ``--chunk-rays``: same image for any chunk size, never more rays at once."""

import imageio.v3 as iio
import numpy as np

from omnifield.apps.recon.config import TrainConfig
from omnifield.apps.recon.evaluate import evaluate
from omnifield.apps.recon.run import Run
from omnifield.config_overrides import apply_override
from omnifield.data.blender import load_blender
from omnifield.fields.registry import field_config
from omnifield.renderers.volume import VolumeRendererConfig
from tests.conftest import LEGO


def _tiny_run(tmp_path) -> Run:
    field = field_config("hashgrid")
    for assignment in ("encoding.log2_hashmap_size=12", "encoding.n_levels=4", "encoding.max_resolution=64"):
        field = apply_override(field, assignment, "field")
    renderer = apply_override(VolumeRendererConfig(sampler="uniform"), "n_steps_per_diagonal=64", "renderer")
    return Run.create(tmp_path / "run", "hashgrid", field, renderer, TrainConfig(), str(LEGO), 16)


def test_chunked_rendering_matches_and_respects_the_budget(tmp_path, monkeypatch):
    run = _tiny_run(tmp_path)
    data = load_blender(LEGO, "test", 16)  # 12x12 pixels
    data.images, data.names = data.images[:1], data.names[:1]
    seen = []
    render_rays = run.renderer.render_rays

    def counting(field, origins, *args, **kwargs):
        seen.append(origins.shape[0])
        return render_rays(field, origins, *args, **kwargs)

    monkeypatch.setattr(run.renderer, "render_rays", counting)
    whole = evaluate(run, data, tmp_path / "a", progress=False, chunk=10**6)
    assert seen == [144]
    seen.clear()
    chunked = evaluate(run, data, tmp_path / "b", progress=False, chunk=7)
    assert max(seen) == 7 and sum(seen) == 144 and len(seen) == 21
    assert abs(whole["psnr"] - chunked["psnr"]) < 1e-4
    a, b = (iio.imread(tmp_path / d / f"{data.names[0]}.png").astype(int) for d in "ab")
    assert np.abs(a - b).max() <= 1
