"""Fit a radiance field (any backend) to an analytic world by regression at points.

The navigation demo needs a *learned* model of the world for the planner and the estimator, distinct
from the world itself (which only the simulated camera sees). This regresses the field's density logit
to ``log sigma_world`` (floored) and its colour to the world's colour near surfaces, on points drawn
half uniformly in the box and half close to the world's surfaces (projected along the SDF gradient).
"""

from __future__ import annotations

import torch

from omnifield.apps.nav.scenes import AnalyticScene
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.radiance import RadianceField, RadianceFieldConfig

LOG_SIGMA_FLOOR = -4.0


def small_hashgrid_config(aabb: tuple) -> RadianceFieldConfig:
    """A CPU-sized hash-grid radiance field over ``aabb``."""
    return RadianceFieldConfig(
        encoding=HashGridConfig(n_levels=8, log2_hashmap_size=15, base_resolution=8, max_resolution=128),
        density_decoder=MLPConfig(width=32, n_hidden_layers=1),
        color_decoder=MLPConfig(width=32, n_hidden_layers=1),
        sh_degree=1,
        aabb=tuple(float(a) for a in aabb),
    )


def sample_training_points(world: AnalyticScene, aabb: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, 3]`` points: half uniform in ``aabb [6]``, half within a few cm of the world's surfaces."""
    lo, hi = aabb[:3], aabb[3:]
    x = lo + torch.rand(n, 3, generator=generator) * (hi - lo)
    near = x[: n // 2].clone().requires_grad_(True)
    sdf = world.sdf(near)
    (grad,) = torch.autograd.grad(sdf.sum(), near)
    surface = near.detach() - sdf.detach()[:, None] * grad
    surface = surface + 0.02 * torch.randn(surface.shape, generator=generator)
    return torch.cat([surface.clamp(lo, hi), x[n // 2 :]])


def fit_field_to_world(world: AnalyticScene, field: RadianceField, steps: int = 1000, batch: int = 8192,
                       lr: float = 1e-2, seed: int = 0) -> list[float]:
    """Train ``field`` on ``world`` in place; returns the loss per step."""
    gen = torch.Generator().manual_seed(seed)
    aabb = field.aabb
    opt = torch.optim.Adam(field.parameters(), lr=lr, eps=1e-15)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    history = []
    for _ in range(steps):
        x = sample_training_points(world, aabb, batch, gen)
        d = torch.nn.functional.normalize(torch.randn(batch, 3, generator=gen), dim=-1)
        with torch.no_grad():
            rgb_true, sigma_true = world(x, d)
        feats = field.point_features(x)
        log_sigma_true = sigma_true.clamp_min(1e-12).log().clamp_min(LOG_SIGMA_FLOOR)
        density_loss = (feats[:, 0].clamp_min(LOG_SIGMA_FLOOR) - log_sigma_true).square().mean()
        surface = (sigma_true > 1.0).float()[:, None]
        color_loss = ((field.rgb_from_features(feats, d) - rgb_true).square() * surface).sum() / surface.sum().clamp_min(1)
        loss = density_loss + 10.0 * color_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append(loss.item())
    return history
