"""Settings of Gaussian-splat training (``omnifield train --method splat``); the budget is the engine's
:class:`~omnifield.engine.LoopConfig`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from omnifield.config import register_config
from omnifield.errors import OmnifieldError
from omnifield.fields.compact_gaussians import CompactConfig

INITS = ("auto", "scene", "triangulate", "views", "random", "points", "nerf")
LEARNING_RATES = {"means": 1.6e-4, "log_scales": 5e-3, "quats": 1e-3, "opacity_logits": 5e-2,
                  "sh_dc": 2.5e-3, "sh_rest": 2.5e-3 / 20, "mask_logits": 1e-2}
FIELD_LR = 1e-2  # hash grid and colour MLP of Compact-3DGS (the paper's code)
# x0.33 at these fractions of the run. The paper's code: one step at 25k of 30k steps for synthetic objects,
# three (5k, 15k, 25k) for real scenes; the second set stalls the colour field in a short run.
FIELD_LR_DECAY_AT = (5 / 6,)


SPARSE_DENSIFY_FROM = 1 / 60  # gsplat's step 500 of 30k, as a fraction of the run


def resolve_densify_from(densify_from: float | None, n_initial: int, n_init: int) -> float:
    """``--densify-from auto``: 1/60 of the run when it starts from fewer than ``n_init`` Gaussians (a sparse
    structure-from-motion cloud, which must grow early in a run of a few thousand steps), else 1 (density
    control waits for ``refine_start``, letting a dense or random start settle first). Measured in 10-minute
    runs: fern from 1.5k triangulated points 25.06 -> 25.32 dB; lego from 20k random points 32.79 -> 32.49 dB."""
    if densify_from is not None:
        return densify_from
    return SPARSE_DENSIFY_FROM if n_initial < n_init else 1.0


SPARSE_DEPTH_WEIGHT = 1e-2  # gsplat's depth_lambda
PHOTO_MAX_SCALE_RATIO = 10.0  # splatfacto's max_gauss_ratio


def resolve_photo_regularisers(depth_weight: float | None, max_scale_ratio: float | None,
                               scene_type: str) -> tuple[float, float]:
    """``--depth-weight`` and ``--max-scale-ratio`` where left to auto, by ``scene_type`` (``detect_scene_type``:
    object, forward or unbounded).

    - depth: gsplat's 0.01 for photos (real captures, whose views leave the geometry loose between them), 0
      for objects with alpha (their masks pin it down). 10-minute runs: kitchen25 (unbounded) 19.15 dB with it,
      16.35 without; fern (forward) 25.19, 25.22 and 25.31 with it, 25.32 and 25.27 without.
    - ratio: splatfacto's 10 for 360° captures, whose held-out views see a spike from the side, off for
      forward-facing ones (all views look along it; thin fronds need thin Gaussians) and objects. Kitchen25
      (unbounded, 10 minutes): 18.31 -> 19.22 dB (the spikes across the table in held-out view 16 went,
      21.2 -> 24.2 dB); fern: 25.31 -> 25.16 dB.
    """
    photo = scene_type != "object"
    return (SPARSE_DEPTH_WEIGHT if photo else 0.0) if depth_weight is None else depth_weight, \
        (PHOTO_MAX_SCALE_RATIO if scene_type == "unbounded" else 0.0) if max_scale_ratio is None else max_scale_ratio


@register_config("splat_train")
@dataclass
class SplatTrainConfig:
    """One splat run: initialisation, SH schedule, density control, Compact-3DGS, losses, evaluation.

    Fractions (``densify_from``, ``densify_until``, ``rvq_from``, ``color_lr_decay_at``) are of the run's
    progress, ``max(step / steps, elapsed / budget)``. Density control starts at step ``refine_start`` or at
    ``densify_from`` of the run, whichever comes first; ``densify_from = None`` (auto) is resolved by
    :func:`resolve_densify_from`; ``depth_weight`` and ``max_scale_ratio`` = None by
    :func:`resolve_photo_regularisers`. A run records them resolved (never auto).
    """

    init: str = "auto"
    init_points: str = ""
    init_nerf: str = ""
    n_init: int = 20000
    aabb: tuple[float, ...] = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
    sh_degree: int = 3
    sh_interval: int = 1000
    max_gaussians: int = 200000
    densify_from: float | None = None
    densify_until: float = 0.5
    refine_every: int = 100
    reset_every: int = 3000
    refine_start: int = 500
    compact: bool = False
    rvq_from: float = 29 / 30
    mask_lambda: float = CompactConfig.mask_lambda
    mask_lr: float = LEARNING_RATES["mask_logits"]
    color_lr: float = FIELD_LR
    color_lr_decay_at: tuple[float, ...] = FIELD_LR_DECAY_AT
    s3im_weight: float = 0.0
    depth_weight: float | None = None
    max_scale_ratio: float | None = None
    downscale: int = 1
    seed: int = 0
    evaluate: bool = True
    eval_views: int = 0

    def check(self) -> None:
        """Refuse settings that cannot train (one :class:`OmnifieldError` line naming the option)."""
        if self.init not in INITS:
            raise OmnifieldError(f"--init must be one of {', '.join(INITS)}, got {self.init!r}")
        if len(self.aabb) != 6 or not all(math.isfinite(v) for v in self.aabb):
            raise OmnifieldError(f"--aabb needs 6 finite numbers (min xyz, max xyz), got {list(self.aabb)}")
        if self.sh_degree not in (0, 1, 2, 3):
            raise OmnifieldError(f"--sh-degree must be 0, 1, 2 or 3, got {self.sh_degree}")
        fractions = [self.densify_until, self.rvq_from, *self.color_lr_decay_at]
        fractions += [] if self.densify_from is None else [self.densify_from]
        if not all(0.0 <= f <= 1.0 for f in fractions):  # also catches NaN
            raise OmnifieldError("--densify-from, --densify-until, --rvq-from and --color-lr-decay-at must be fractions "
                                 "in [0, 1]")
        if self.mask_lambda < 0:
            raise OmnifieldError("--mask-lambda must be >= 0")
        if not (self.mask_lr > 0 and self.color_lr > 0):  # also catches NaN
            raise OmnifieldError("--mask-lr and --color-lr must be > 0")
        if self.n_init < 1:
            raise OmnifieldError("--n-init must be >= 1")
        if not self.s3im_weight >= 0:
            raise OmnifieldError("--loss.s3im-weight must be >= 0")
        if self.max_scale_ratio is not None and not (self.max_scale_ratio == 0 or 1 <= self.max_scale_ratio < math.inf):
            raise OmnifieldError("--max-scale-ratio must be 0 (off) or a finite number >= 1")
        if self.depth_weight is not None and not (0 <= self.depth_weight < math.inf):
            raise OmnifieldError("--depth-weight must be a finite number >= 0")
        if min(self.refine_every, self.reset_every) < 1 or min(self.sh_interval, self.max_gaussians,
                                                               self.refine_start, self.eval_views) < 0:
            raise OmnifieldError("--refine-every and --reset-every must be >= 1; --sh-interval, --max-gaussians, "
                                 "--refine-start and --eval-views >= 0")
