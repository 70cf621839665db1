"""PVD-AL building blocks against direct formulas."""

import pytest
import torch

from omnifield.distill.active import ActiveConfig, HardRayPool, RayBatch, ViewSampler, point_weights


def test_view_sampler_is_uniform_without_image_level_and_softmax_of_psnr_with_it():
    g = torch.Generator().manual_seed(0)
    off = ViewSampler(4, ActiveConfig(), g)
    assert torch.allclose(off.probabilities(), torch.full((4,), 0.25))
    on = ViewSampler(4, ActiveConfig(image=True, temperature=2.0, psnr_ema=0.5), g)
    views = torch.tensor([0, 0, 1, 2])
    on.observe(views, torch.tensor([0.01, 0.03, 0.001, 0.1]))
    assert torch.allclose(on.mse[:3], torch.tensor([0.02, 0.001, 0.1]))
    psnr = -10 * torch.log10(torch.tensor([0.02, 0.001, 0.1, 0.1]))  # unseen view 3 counts as the worst seen
    assert torch.allclose(on.probabilities(), torch.softmax(-psnr / 2.0, 0), atol=1e-6)
    on.observe(torch.tensor([1]), torch.tensor([0.003]))
    assert float(on.mse[1]) == pytest.approx(0.5 * 0.001 + 0.5 * 0.003)
    drawn = on.sample(20000)
    freq = torch.bincount(drawn, minlength=4).float() / 20000
    assert torch.allclose(freq, on.probabilities(), atol=0.02)


def test_hard_ray_pool_keeps_the_top_tenth_by_error():
    g = torch.Generator().manual_seed(0)
    pool = HardRayPool(ActiveConfig(ray=True, hard_fraction=0.1, pool_size=15), g)
    assert pool.draw(4) is None
    rays = RayBatch(torch.arange(100), torch.rand(100), torch.rand(100))
    errors = torch.rand(100, generator=g)
    pool.push(rays, errors)
    assert set(pool.rays.views.tolist()) == set(torch.argsort(errors, descending=True)[:10].tolist())
    pool.push(rays, -errors)
    assert len(pool) == 15  # newest first, capped
    assert set(pool.rays.views[:10].tolist()) == set(torch.argsort(errors)[:10].tolist())
    drawn = pool.draw(50)
    assert len(drawn) == 50 and set(drawn.views.tolist()) <= set(pool.rays.views.tolist())


def test_point_weights_follow_teacher_weights_with_unit_mean():
    w = torch.tensor([0.0, 0.1, 0.6, 0.3])
    pw = point_weights(w, floor=0.5)
    assert torch.allclose(pw, 0.5 + 0.5 * w / w.mean())
    assert float(pw.mean()) == pytest.approx(1.0)
    assert torch.equal(torch.argsort(pw), torch.argsort(w))


def test_active_config_validation():
    with pytest.raises(ValueError):
        ActiveConfig(temperature=0.0)
    assert ActiveConfig.all_on().image and ActiveConfig.all_on().ray and ActiveConfig.all_on().point
