"""PVD under the training engine: an interrupted distillation resumed from its folder equals a straight run,
and a teacher living in contracted space (unbounded captures) is distilled where its field lives."""

import json

import pytest
import torch

from omnifield.distill.active import ActiveConfig
from omnifield.distill.pvd import CHECKPOINT, Distiller, PVDConfig, distill
from omnifield.engine import LoopConfig
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.radiance import RadianceFieldConfig
from omnifield.fields.triplane import TriPlaneConfig
from omnifield.io.run_folder import checkpoint_meta
from omnifield.renderers.volume import VolumeRenderer, VolumeRendererConfig
from tests._processes import ctrl_c_at
from tests.test_distill import gaps, ring_cameras, tiny_hashgrid, tiny_triplane, uniform_sampler


def test_interrupted_distillation_resumed_equals_a_straight_run(tmp_path, monkeypatch, one_thread):
    """PVD-AL (view PSNRs, hard-ray pool, stages) interrupted by Ctrl-C at step 9 of 16, resumed: same student."""
    cameras, sampler = ring_cameras(), uniform_sampler()
    cfg = PVDConfig(batch_rays=64, n_sphere_views=4, stage_fractions=(0.25, 0.5), active=ActiveConfig.all_on())
    loop = LoopConfig(steps=16, log_every=1, progress=False, checkpoint_every_s=1e9)
    torch.manual_seed(0)
    teacher = tiny_hashgrid()
    torch.manual_seed(1)
    straight = tiny_triplane()
    distill(teacher, straight, sampler, cameras, cfg, loop, tmp_path / "straight")

    ctrl_c_at(monkeypatch, Distiller, "draw_rays", call=10)  # as step 9 (from 0) draws its rays
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        distill(teacher, tiny_triplane(), sampler, cameras, cfg, loop, tmp_path / "run")
    monkeypatch.undo()
    assert checkpoint_meta(tmp_path / "run" / CHECKPOINT)["step"] == 9
    torch.manual_seed(2)  # another initial student and global RNG: all must come from the checkpoint
    resumed = tiny_triplane()
    distiller = distill(teacher, resumed, sampler, cameras, cfg, loop, tmp_path / "run", resume=True)
    assert distiller.step == 16 and len(distiller.pool) > 0
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    logs = [[json.loads(line) for line in (tmp_path / d / "log.jsonl").read_text().splitlines()]
            for d in ("straight", "run")]
    assert [r["step"] for r in logs[1]] == list(range(1, 17))
    assert [r["stage"] for r in logs[1]] == [1] * 4 + [2] * 4 + [3] * 8
    assert [r["loss"] for r in logs[1]] == [r["loss"] for r in logs[0]]


def test_resume_without_a_checkpoint_is_one_clear_error(tmp_path):
    from omnifield.errors import OmnifieldError

    with pytest.raises(OmnifieldError, match="nothing to resume"):
        distill(tiny_hashgrid(), tiny_triplane(), uniform_sampler(), ring_cameras(), PVDConfig(),
                LoopConfig(steps=1, progress=False), tmp_path, resume=True)


def _contracted_field(encoding):
    box = (-2.0, -2.0, -2.0, 2.0, 2.0, 2.0)  # all of space, contracted
    small = MLPConfig(width=16, n_hidden_layers=1)
    return RadianceFieldConfig(encoding=encoding, density_decoder=small, color_decoder=small, sh_degree=2,
                               aabb=box).build()


def test_contract_space_teacher_is_distilled_where_its_field_lives(tmp_path):
    """Cameras at radius 2.5 of a capture scaled by 0.5 around (0.3, 0, 0): rays leave the unit cube, so
    the field is queried at contracted points (|x|_inf <= 2); distilling there lowers the rendered gap."""
    torch.manual_seed(0)
    teacher = _contracted_field(HashGridConfig(n_levels=4, n_features_per_level=2, base_resolution=4,
                                               max_resolution=16, init_scale=1.0))
    student = _contracted_field(TriPlaneConfig(resolutions=(16,), n_features=8, aggregation="sum"))
    sampler = VolumeRenderer(teacher.aabb, VolumeRendererConfig(sampler="uniform", space="contract", n_samples=16,
                                                                space_center=(0.3, 0.0, 0.0), space_scale=0.5,
                                                                near_plane=0.05, far_plane=20.0))
    cameras = ring_cameras()
    _, rgb0 = gaps(teacher, student, cameras, sampler)
    queried = []
    features = teacher.point_features
    teacher.point_features = lambda x: queried.append(x) or features(x)
    cfg = PVDConfig(batch_rays=64, n_sphere_views=4, stage_fractions=(0.2, 0.5))
    distill(teacher, student, sampler, cameras, cfg, LoopConfig(steps=12, progress=False), tmp_path)
    del teacher.point_features
    _, rgb1 = gaps(teacher, student, cameras, sampler)
    print(f"contracted teacher: rendered MSE {rgb0:.5f} -> {rgb1:.6f}")
    points = torch.cat(queried)
    assert float(points.abs().amax()) <= 2.0 + 1e-5
    assert float((points.abs().amax(-1) > 1.0).float().mean()) > 0.1  # the contracted shell is sampled too
    assert rgb1 < 0.5 * rgb0


def test_a_run_folder_checkpoint_written_by_run_save_resumes(tmp_path, monkeypatch):
    """What ``omnifield convert`` does: checkpoints through ``Run.save`` (an ordinary run folder at every
    checkpoint), then ``Run.open`` + ``distill(..., resume=True)`` continues to the budget."""
    from omnifield.apps.recon.config import TrainConfig
    from omnifield.apps.recon.run import Run
    from omnifield.config import config_to_dict

    cameras, sampler = ring_cameras(), uniform_sampler()
    teacher = tiny_hashgrid()
    cfg = PVDConfig(batch_rays=32, n_sphere_views=2)
    loop = LoopConfig(steps=6, progress=False, checkpoint_every_s=1e9)
    out = tmp_path / "student"
    run = Run.create(out, "triplane", tiny_triplane().cfg, sampler.cfg, TrainConfig(steps=6), "")
    extra = {"distilled_from": "teacher", "pvd": config_to_dict(cfg)}
    ctrl_c_at(monkeypatch, Distiller, "draw_rays", call=4)  # as step 3 (from 0) draws its rays
    with pytest.raises(KeyboardInterrupt):
        distill(teacher, run.field, sampler, cameras, cfg, loop, out,
                save=lambda step, tensors, meta: run.save(step, tensors, {**meta, **extra}))
    monkeypatch.undo()
    reopened, _, meta = Run.open(out)
    assert meta["step"] == 3 and meta["distilled_from"] == "teacher"
    distiller = distill(teacher, reopened.field, sampler, cameras, cfg, loop, out, resume=True,
                        save=lambda step, tensors, meta: reopened.save(step, tensors, {**meta, **extra}))
    assert distiller.step == 6 and Run.open(out)[2]["step"] == 6
