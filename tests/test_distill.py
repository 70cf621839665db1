"""PVD distillation: losses lower the teacher/student gap, for fields and for a Gaussian teacher."""

import json
import math

import pytest
import torch

from omnifield.distill.active import ActiveConfig
from omnifield.distill.poses import join_cameras, sphere_cameras
from omnifield.distill.pvd import (
    Distiller,
    PVDConfig,
    distill,
    feature_weight_at,
    point_outputs,
    share_color_head,
    stage_at,
)
from omnifield.engine import LoopConfig
from omnifield.fields.gaussians import GaussianScene
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.radiance import RadianceFieldConfig
from omnifield.fields.triplane import TriPlaneConfig
from omnifield.renderers.cameras import Cameras, look_at
from omnifield.renderers.volume import VolumeRenderer, VolumeRendererConfig

AABB = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
SMALL = dict(density_decoder=MLPConfig(width=16, n_hidden_layers=1), color_decoder=MLPConfig(width=16, n_hidden_layers=1),
             sh_degree=2, aabb=AABB)


def tiny_hashgrid():
    enc = HashGridConfig(n_levels=4, n_features_per_level=2, base_resolution=4, max_resolution=16, init_scale=1.0)
    return RadianceFieldConfig(encoding=enc, **SMALL).build()


def tiny_triplane():
    return RadianceFieldConfig(encoding=TriPlaneConfig(resolutions=(16,), n_features=8, aggregation="sum"), **SMALL).build()


def ring_cameras(n=4, size=12):
    angles = torch.arange(n) * 2 * math.pi / n
    eye = torch.stack([2.5 * torch.cos(angles), 2.5 * torch.sin(angles), torch.full((n,), 0.6)], -1)
    return Cameras.from_fov(look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])), 0.9, size, size)


def uniform_sampler(n=16):
    return VolumeRenderer(AABB, VolumeRendererConfig(sampler="uniform", n_samples=n))


@torch.no_grad()
def gaps(teacher, student, cameras, sampler):
    """(feature MSE at fixed points or None, rendered-RGB MSE over every pixel of every camera)."""
    x = torch.rand(2048, 3, generator=torch.Generator().manual_seed(5)) * 1.8 - 0.9
    feat = None
    if hasattr(teacher, "point_features"):
        feat = float(((teacher.point_features(x) - student.point_features(x)) ** 2).mean())
    rgb = []
    for i in range(len(cameras)):
        o, d = cameras.image_rays(i)
        t = sampler.render_rays(teacher, o, d, torch.ones(3)).rgb
        s = sampler.render_rays(student, o, d, torch.ones(3)).rgb
        rgb.append(((t - s) ** 2).mean())
    return feat, float(torch.stack(rgb).mean())


def test_stages_and_feature_weight_schedule():
    cfg = PVDConfig(stage_fractions=(0.2, 0.5), feature_weight=2.0, feature_decay=0.01)
    assert [stage_at(p, cfg) for p in (0.0, 0.19, 0.2, 0.49, 0.5, 1.0)] == [1, 1, 2, 2, 3, 3]
    assert feature_weight_at(0.0, cfg) == pytest.approx(2.0)
    assert feature_weight_at(0.5, cfg) == pytest.approx(0.2)
    assert feature_weight_at(1.0, cfg) == pytest.approx(0.02)
    with pytest.raises(ValueError):
        PVDConfig(stage_fractions=(0.6, 0.5))


def test_colour_head_is_shared_when_shapes_match():
    teacher, student = tiny_hashgrid(), tiny_triplane()
    assert share_color_head(teacher, student)
    for a, b in zip(teacher.color_decoder.parameters(), student.color_decoder.parameters()):
        assert torch.equal(a, b)
    other = RadianceFieldConfig(encoding=TriPlaneConfig(resolutions=(8,), n_features=4),
                                **{**SMALL, "color_decoder": MLPConfig(width=8, n_hidden_layers=1)}).build()
    assert not share_color_head(teacher, other)


def test_sphere_cameras_sit_on_the_reference_radius_and_look_at_the_centre():
    ref = ring_cameras()
    cams = sphere_cameras(ref, 50, torch.Generator().manual_seed(0))
    radius = ref.c2w[:, :3, 3].norm(dim=-1).mean()
    eye = cams.c2w[:, :3, 3]
    assert torch.allclose(eye.norm(dim=-1), radius.expand(50), atol=1e-5)
    forward = -cams.c2w[:, :3, 2]  # OpenGL cameras look down -z
    assert torch.allclose(forward, -eye / eye.norm(dim=-1, keepdim=True), atol=1e-5)
    both = join_cameras(ref, cams)
    assert len(both) == 54 and torch.equal(both.c2w[:4], ref.c2w)


@pytest.mark.parametrize("active", [ActiveConfig(), ActiveConfig.all_on()])
def test_pvd_lowers_feature_and_rgb_gap_between_two_small_fields(active, tmp_path):
    teacher, student = tiny_hashgrid(), tiny_triplane()
    cameras, sampler = ring_cameras(), uniform_sampler()
    feat0, rgb0 = gaps(teacher, student, cameras, sampler)
    cfg = PVDConfig(batch_rays=128, n_sphere_views=8, stage_fractions=(0.2, 0.5), active=active)
    distill(teacher, student, sampler, cameras, cfg, LoopConfig(steps=40, log_every=1, progress=False), tmp_path)
    stages = [json.loads(line)["stage"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    feat1, rgb1 = gaps(teacher, student, cameras, sampler)
    assert feat1 < 0.2 * feat0
    assert rgb1 < 0.5 * rgb0
    assert stages == [1] * 8 + [2] * 12 + [3] * 20  # stage boundaries at 20 % and 50 % of 40 steps
    assert not any(p.requires_grad for p in teacher.parameters())


def _gaussian_teacher() -> GaussianScene:
    g = torch.Generator().manual_seed(0)
    n = 12
    means = torch.rand(n, 3, generator=g) - 0.5
    sh = torch.zeros(n, 1, 3)
    sh[:, 0] = (torch.rand(n, 3, generator=g) - 0.5) / 0.28209479177387814
    teacher = GaussianScene(means, torch.full((n, 3), math.log(0.15)), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                            torch.full((n,), 2.0), sh)
    teacher.aabb = torch.tensor(AABB)
    return teacher


def test_teacher_images_are_the_rasterized_renders_on_any_background():
    from omnifield.distill.active import RayBatch
    from omnifield.distill.teacher_images import TeacherImages
    from omnifield.renderers.splat import SplatRenderer

    teacher, cameras = _gaussian_teacher(), ring_cameras()
    images = TeacherImages(teacher, cameras)
    views = torch.tensor([0, 1, 3, 3])
    px, py = torch.tensor([0.5, 5.5, 11.5, 6.5]), torch.tensor([0.5, 6.5, 3.5, 6.5])
    for colour in ((1.0, 1.0, 1.0), (0.2, 0.7, 0.1)):
        bg = torch.tensor(colour).expand(4, 3)
        got = images.lookup(RayBatch(views, px, py), bg)
        with torch.no_grad():
            want = torch.stack([SplatRenderer(background=colour).render_camera(teacher, cameras, int(v))["rgb"][
                int(y), int(x)] for v, x, y in zip(views, px, py)])
        torch.testing.assert_close(got, want, atol=2.5 / 255, rtol=0)  # 8-bit storage


def _splat_gap(teacher, student, cameras, sampler) -> float:
    """Mean squared difference between the student's volume rendering and the teacher's rasterized image."""
    from omnifield.renderers.splat import SplatRenderer

    errors = []
    with torch.no_grad():
        for i in range(len(cameras)):
            o, d = cameras.image_rays(i)
            s = sampler.render_rays(student, o, d, torch.ones(3)).rgb.reshape(cameras.height, cameras.width, 3)
            errors.append(((SplatRenderer().render_camera(teacher, cameras, i)["rgb"] - s) ** 2).mean())
    return float(torch.stack(errors).mean())


def test_pvd_from_a_gaussian_teacher_matches_density_and_colour():
    teacher = _gaussian_teacher()
    student, cameras, sampler = tiny_triplane(), ring_cameras(), uniform_sampler()
    x = torch.rand(8, 3) - 0.5
    out = point_outputs(teacher, x, torch.randn(8, 3))
    assert out.features is None and torch.allclose(out.logit.exp(), teacher.density(x), rtol=1e-4)
    _, rgb0 = gaps(teacher, student, cameras, sampler)
    splat0 = _splat_gap(teacher, student, cameras, sampler)
    Distiller(teacher, student, sampler, cameras, PVDConfig(steps=40, batch_rays=128, n_sphere_views=8)).fit(progress=False)
    _, rgb1 = gaps(teacher, student, cameras, sampler)
    assert rgb1 < 0.5 * rgb0
    assert _splat_gap(teacher, student, cameras, sampler) < 0.5 * splat0  # the teacher's own (rasterized) image
