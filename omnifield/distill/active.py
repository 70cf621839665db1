"""PVD-AL active learning (Fang et al. 2023): where the student is worst gets sampled more.

Three levels, each switchable in :class:`ActiveConfig`:

- image level — :class:`ViewSampler`: views drawn with ``softmax(-PSNR_v / temperature)`` over a
  running per-view PSNR of the student against the teacher (from the training batches themselves);
- ray level — :class:`HardRayPool`: the hardest ``hard_fraction`` (10 %) of every batch's rays
  are kept in a pool and make up ``pool_share`` of the next batches;
- point level — :func:`point_weights`: per-point losses weighted by the teacher's compositing weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnifield.config import register_config
from omnifield.metrics import psnr_from_mse_tensor


@register_config("active_learning")
@dataclass
class ActiveConfig:
    """Switches and settings of the three active-learning levels."""

    image: bool = False
    ray: bool = False
    point: bool = False
    temperature: float = 1.0  # dB
    psnr_ema: float = 0.9
    hard_fraction: float = 0.1
    pool_share: float = 0.25
    pool_size: int = 1 << 14

    def __post_init__(self) -> None:
        if self.temperature <= 0 or not 0 < self.hard_fraction <= 1 or not 0 <= self.pool_share < 1:
            raise ValueError("temperature must be > 0, hard_fraction in (0, 1], pool_share in [0, 1)")

    @classmethod
    def all_on(cls) -> "ActiveConfig":
        return cls(image=True, ray=True, point=True)


@dataclass
class RayBatch:
    """Rays as pixels of views: ``views [R]`` (long), ``px [R]``, ``py [R]`` (float pixel coordinates)."""

    views: torch.Tensor
    px: torch.Tensor
    py: torch.Tensor

    def __len__(self) -> int:
        return self.views.shape[0]

    def cat(self, other: "RayBatch") -> "RayBatch":
        return RayBatch(torch.cat([self.views, other.views]), torch.cat([self.px, other.px]),
                        torch.cat([self.py, other.py]))

    def select(self, idx: torch.Tensor) -> "RayBatch":
        return RayBatch(self.views[idx], self.px[idx], self.py[idx])


class ViewSampler:
    """Draws views uniformly, or (``active``) by ``softmax(-psnr / temperature)`` over per-view PSNR."""

    def __init__(self, n_views: int, cfg: ActiveConfig, generator: torch.Generator):
        self.cfg, self.generator = cfg, generator
        self.mse = torch.full((n_views,), float("nan"))  # running per-view MSE; NaN = never seen

    def psnr(self) -> torch.Tensor:
        """Per-view PSNR ``[V]``; unseen views count as the worst seen (so they get drawn)."""
        mse = self.mse.clone()
        seen = ~torch.isnan(mse)
        mse[~seen] = mse[seen].max() if bool(seen.any()) else 1.0
        return psnr_from_mse_tensor(mse)

    def probabilities(self) -> torch.Tensor:
        """Sampling probability of each view ``[V]``."""
        if not self.cfg.image:
            return torch.full_like(self.mse, 1.0 / self.mse.numel())
        return torch.softmax(-self.psnr() / self.cfg.temperature, dim=0)

    def sample(self, n: int) -> torch.Tensor:
        """``n`` view indices ``[n]``."""
        return torch.multinomial(self.probabilities(), n, replacement=True, generator=self.generator)

    def observe(self, views: torch.Tensor, sq_err: torch.Tensor) -> None:
        """Fold a batch's per-ray squared errors ``[R]`` (mean over channels) into the per-view MSE."""
        v = self.mse.numel()
        total = torch.zeros(v).index_add_(0, views, sq_err.detach().float())
        count = torch.zeros(v).index_add_(0, views, torch.ones_like(sq_err, dtype=torch.float32))
        hit = count > 0
        batch_mse = total[hit] / count[hit]
        old = self.mse[hit]
        a = self.cfg.psnr_ema
        self.mse[hit] = torch.where(torch.isnan(old), batch_mse, a * old + (1 - a) * batch_mse)


class HardRayPool:
    """The hardest rays seen lately (top ``hard_fraction`` of each batch by error), at most ``pool_size``."""

    def __init__(self, cfg: ActiveConfig, generator: torch.Generator):
        self.cfg, self.generator = cfg, generator
        self.rays: RayBatch | None = None

    def __len__(self) -> int:
        return 0 if self.rays is None else len(self.rays)

    def push(self, rays: RayBatch, errors: torch.Tensor) -> None:
        """Keep the ``hard_fraction`` of ``rays`` with the largest ``errors [R]``."""
        k = max(1, int(round(self.cfg.hard_fraction * len(rays))))
        hard = rays.select(torch.topk(errors.detach(), k).indices)
        self.rays = hard if self.rays is None else hard.cat(self.rays)
        if len(self.rays) > self.cfg.pool_size:
            self.rays = self.rays.select(torch.arange(self.cfg.pool_size))

    def draw(self, n: int) -> RayBatch | None:
        """``n`` rays from the pool (with replacement), or None when it is empty."""
        if self.rays is None or n <= 0:
            return None
        return self.rays.select(torch.randint(0, len(self.rays), (n,), generator=self.generator))


def point_weights(teacher_weights: torch.Tensor, floor: float = 0.5) -> torch.Tensor:
    """Per-point loss weights ``[S]`` from the teacher's compositing weights ``[S]``.

    ``floor + (1 - floor) * w / mean(w)``: mean 1, surface points dominate, empty space keeps ``floor``.
    """
    w = teacher_weights.detach()
    return floor + (1.0 - floor) * w / w.mean().clamp_min(1e-12)
