"""Fit a radiance field (any backend) to an analytic world by regression at points.

The navigation demo needs a *learned* model of the world for the planner and the estimator, distinct
from the world itself (which only the simulated camera sees). This regresses the field's density logit
to ``log sigma_world`` (floored) and its colour to the world's colour near surfaces, on points drawn
half uniformly in the box and half close to the world's surfaces (projected along the SDF gradient).
The loop is the training engine's, as a :class:`~omnifield.engine.regression.FieldFit` task with a cosine
learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import torch

from omnifield.apps.nav.scenes import AnalyticScene
from omnifield.config import register_config
from omnifield.engine import LoopConfig
from omnifield.engine.regression import FieldFit, run_fit
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.radiance import RadianceField, RadianceFieldConfig

LOG_SIGMA_FLOOR = -4.0


@register_config("world_fit")
@dataclass
class WorldFitConfig:
    """Points per batch, Adam's learning rate (cosine-annealed over the budget down to ``lr_floor`` times
    it), seed; ``loop``: the budget (steps and/or minutes), log and checkpoint intervals."""

    batch: int = 8192
    lr: float = 1e-2
    lr_floor: float = 0.05
    seed: int = 0
    loop: LoopConfig = dataclass_field(default_factory=lambda: LoopConfig(steps=1000))


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


def world_loss(world: AnalyticScene, field: RadianceField, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The regression loss at points ``x [N, 3]`` seen along ``d [N, 3]``: squared error of the density
    logit to ``log sigma`` (both floored), plus 10 x the colour's squared error where the world is solid."""
    with torch.no_grad():
        rgb_true, sigma_true = world(x, d)
    feats = field.point_features(x)
    log_sigma_true = sigma_true.clamp_min(1e-12).log().clamp_min(LOG_SIGMA_FLOOR)
    density_loss = (feats[:, 0].clamp_min(LOG_SIGMA_FLOOR) - log_sigma_true).square().mean()
    surface = (sigma_true > 1.0).float()[:, None]
    color_loss = ((field.rgb_from_features(feats, d) - rgb_true).square() * surface).sum() / surface.sum().clamp_min(1)
    return density_loss + 10.0 * color_loss


def fit_field_to_world(world: AnalyticScene, field: RadianceField, cfg: WorldFitConfig, checkpoint: Path | None = None,
                       meta: dict[str, Any] | None = None, resume: tuple[dict, dict] | None = None,
                       log: Path | None = None) -> int:
    """Train ``field`` on ``world`` in place under ``cfg.loop``; returns the steps done.

    ``checkpoint`` receives the training state with ``meta`` (None: nowhere), ``resume = (tensors, meta)``
    of such a checkpoint continues it exactly, ``log`` receives ``log.jsonl`` lines."""
    aabb = field.aabb

    def batch_loss(generator: torch.Generator) -> torch.Tensor:
        x = sample_training_points(world, aabb, cfg.batch, generator)
        d = torch.nn.functional.normalize(torch.randn(cfg.batch, 3, generator=generator), dim=-1)
        return world_loss(world, field, x, d)

    optimizer = torch.optim.Adam(field.parameters(), lr=cfg.lr, eps=1e-15)
    task = FieldFit(field, optimizer, batch_loss, cfg.seed, lr_floor=cfg.lr_floor, checkpoint=checkpoint, meta=meta)
    return run_fit(task, cfg.loop, resume, "fit the world", log).step
