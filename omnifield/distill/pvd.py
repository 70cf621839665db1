"""PVD, "One is All" (Fang et al., AAAI 2023): distil any teacher field into any student field.

Shared space: every :class:`~omnifield.fields.radiance.RadianceField` computes per-point features
``[density logit, 15 geo features]`` ahead of a view-dependent colour head of the same shape; the
student gets the teacher's colour head (copied) and learns to reproduce the teacher's features.
A :class:`~omnifield.fields.gaussians.GaussianScene` teacher has no features; it is matched through
``density`` (as the logit ``log sigma``) and ``rgb`` at the points (weighted ``splat_point_weight``),
and its rendering is its rasterized image (:mod:`.teacher_images`; rays then pass through pixel
centres), matched from the first step.

Per step: rays from random sphere poses and the training cameras (:mod:`.poses`), moved into the
sampler's space (box, NDC or contracted: where the teacher's field lives, see
:mod:`omnifield.renderers.space`), one set of samples along them (occupancy grid and early
termination of the teacher), and at those same points:

- stage 1 (from 0): feature loss ``||f_s - f_t||^2`` with a weight decaying from ``feature_weight``
  to ``feature_weight * feature_decay`` over the run;
- stage 2 (from ``stage_fractions[0]``): + density (clamped logits) and per-point colour losses;
- stage 3 (from ``stage_fractions[1]``): + rendered-colour loss against the teacher's rendering.

The density logit is clamped to ``[logit_min, logit_max]`` before the exponential. PVD-AL
(:mod:`.active`) chooses views, rays and point weights.

:class:`Distiller` is a task of the training engine (:mod:`omnifield.engine`): budget, progress bar,
``log.jsonl``, evaluation schedule, checkpoints, Ctrl-C and resume are the engine's. :func:`distill`
runs one into a folder (``resume`` continues it from its checkpoint).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from omnifield.config import register_config
from omnifield.distill.active import ActiveConfig, HardRayPool, RayBatch, ViewSampler, point_weights
from omnifield.distill.poses import join_cameras, sphere_cameras
from omnifield.distill.teacher_images import TeacherImages
from omnifield.engine import Engine, EngineTask, LoopConfig
from omnifield.errors import OmnifieldError
from omnifield.fields.activations import trunc_exp
from omnifield.fields.gaussians import GaussianScene
from omnifield.fields.protocol import PointFeatureFieldLike, RadianceFieldLike
from omnifield.io.checkpoint import (
    load_checkpoint,
    load_module_state,
    module_state,
    remove_stale_temporaries,
    save_checkpoint,
)
from omnifield.metrics import psnr_from_mse
from omnifield.renderers.cameras import Cameras
from omnifield.renderers.volrend import accumulate_along_rays, render_weight_from_density
from omnifield.renderers.volume import VolumeRenderer

CHECKPOINT = "checkpoint.safetensors"
LOG_EVERY = 25


@register_config("pvd")
@dataclass
class PVDConfig:
    """Distillation settings (stages, loss weights, pose sampling, active learning). ``steps`` and
    ``minutes`` are the budget of a :class:`Distiller` built without a :class:`LoopConfig`."""

    steps: int = 3000
    minutes: float = 0.0
    lr: float = 1e-2
    batch_rays: int = 2048
    stage_fractions: tuple = (0.1, 0.3)
    feature_weight: float = 1.0
    feature_decay: float = 0.01
    density_weight: float = 0.01
    color_weight: float = 1.0
    render_weight: float = 1.0
    splat_point_weight: float = 0.1  # Gaussian teachers: scale of the point losses (see losses())
    logit_min: float = -10.0
    logit_max: float = 10.0
    sphere_fraction: float = 0.5
    n_sphere_views: int = 100
    seed: int = 0
    active: Any = field(default_factory=ActiveConfig)

    def __post_init__(self) -> None:
        s2, s3 = self.stage_fractions
        if self.steps < 1 or self.batch_rays < 1 or self.lr <= 0 or self.minutes < 0:
            raise ValueError("steps and batch_rays must be >= 1, lr > 0 and minutes >= 0")
        if not 0 <= s2 <= s3 <= 1:
            raise ValueError(f"stage_fractions must satisfy 0 <= stage2 <= stage3 <= 1, got {self.stage_fractions}")
        if self.logit_min >= self.logit_max or not 0 <= self.sphere_fraction <= 1:
            raise ValueError("logit_min must be < logit_max and sphere_fraction in [0, 1]")


@dataclass
class PointOutputs:
    """A field at sample points: ``logit [S]`` (density logit), ``features [S, F]`` or None, ``rgb [S, 3]``."""

    logit: torch.Tensor
    features: torch.Tensor | None
    rgb: torch.Tensor


def point_outputs(f: RadianceFieldLike, x: torch.Tensor, d: torch.Tensor) -> PointOutputs:
    """Evaluate any radiance field at ``x [S, 3]`` seen along ``d [S, 3]``: one with point features
    (:class:`PointFeatureFieldLike`), or a Gaussian mixture (``forward(x, d) -> (rgb, sigma)``, evaluated
    over nearby Gaussians only)."""
    if isinstance(f, PointFeatureFieldLike):
        feats = f.point_features(x)
        return PointOutputs(feats[:, 0], feats, f.rgb_from_features(feats, d))
    rgb, sigma = f(x, d)
    return PointOutputs(torch.log(sigma.clamp_min(1e-12)), None, rgb)


def share_color_head(teacher: RadianceFieldLike, student: PointFeatureFieldLike) -> bool:
    """Copy the teacher's colour head into the student when both have one of the same shape."""
    if not (isinstance(teacher, PointFeatureFieldLike) and isinstance(student, PointFeatureFieldLike)):
        return False
    t, s = teacher.color_decoder, student.color_decoder
    ts, ss = t.state_dict(), s.state_dict()
    if ts.keys() != ss.keys() or any(ts[k].shape != ss[k].shape for k in ts):
        return False
    s.load_state_dict(ts)
    return True


def stage_at(progress: float, cfg: PVDConfig) -> int:
    """Stage 1, 2 or 3 at ``progress`` in [0, 1]."""
    return 1 + int(progress >= cfg.stage_fractions[0]) + int(progress >= cfg.stage_fractions[1])


def feature_weight_at(progress: float, cfg: PVDConfig) -> float:
    """Exponential decay from ``feature_weight`` to ``feature_weight * feature_decay``."""
    return cfg.feature_weight * cfg.feature_decay**progress


class Distiller(EngineTask):
    """Distils ``teacher`` into ``student`` (a field with point features) on rays of ``cameras``: a task of
    the training engine (``self.engine``).

    ``sampler`` is a :class:`VolumeRenderer` whose occupancy grid describes the teacher (its own
    renderer, or one filled from the teacher's density); it places the samples both fields share, in
    its space. ``loop`` is the budget and loop settings (default: ``cfg.steps`` / ``cfg.minutes``, a
    log line every 25 steps). Checkpoints (the student as ``field/...``, the generator, the active-
    learning state, the engine's step, time and optimiser) go through ``save(step, tensors, meta)``
    when given (e.g. a run folder's ``Run.save``), else to ``out_dir/checkpoint.safetensors`` when
    ``out_dir`` is given. ``evaluate(step) -> dict`` runs on the loop's evaluation schedule (its time
    is not training time).
    """

    def __init__(self, teacher: RadianceFieldLike, student: PointFeatureFieldLike, sampler: VolumeRenderer,
                 train_cameras: Cameras, cfg: PVDConfig, loop: LoopConfig | None = None,
                 out_dir: str | Path | None = None, save: Callable[[int, dict, dict], None] | None = None,
                 evaluate: Callable[[int], dict[str, Any]] | None = None):
        if not isinstance(teacher, RadianceFieldLike):
            raise ValueError(f"the teacher ({type(teacher).__name__}) is no radiance field (density, rgb, aabb)")
        if not isinstance(student, PointFeatureFieldLike):
            raise ValueError(f"the student ({type(student).__name__}) exposes no point features")
        self.teacher, self.student, self.sampler, self.cfg = teacher.eval(), student, sampler, cfg
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.n_train = len(train_cameras)
        sphere = sphere_cameras(train_cameras, cfg.n_sphere_views, self.generator)
        self.cameras = join_cameras(train_cameras, sphere)
        self.teacher_images = TeacherImages(teacher, self.cameras) if isinstance(teacher, GaussianScene) else None
        self.shared_head = share_color_head(teacher, student)
        self.views = ViewSampler(len(self.cameras), cfg.active, self.generator)
        self.pool = HardRayPool(cfg.active, self.generator)
        self.optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr, eps=1e-15)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self._save, self._evaluate = save, evaluate
        loop = loop or LoopConfig(steps=cfg.steps, minutes=cfg.minutes, log_every=LOG_EVERY)
        self.warmup_steps = max(1, min(100, (loop.steps or cfg.steps) // 10))
        self.engine = Engine(self, loop, description="distil", postfix=("stage", "loss", "psnr"),
                             where=str(self.out_dir or ""))

    # ------------------------------------------------------------------ rays
    def _fresh_rays(self, n: int) -> RayBatch:
        cfg, g = self.cfg, self.generator
        if cfg.active.image:
            views = self.views.sample(n)
        else:  # sphere_fraction of the rays from sphere poses, the rest from training cameras
            sphere = torch.rand(n, generator=g) < cfg.sphere_fraction
            n_sphere = len(self.cameras) - self.n_train
            views = torch.where(sphere, self.n_train + torch.randint(0, max(n_sphere, 1), (n,), generator=g),
                                torch.randint(0, self.n_train, (n,), generator=g))
        px = torch.rand(n, generator=g) * self.cameras.width
        py = torch.rand(n, generator=g) * self.cameras.height
        if self.teacher_images is not None:  # the teacher's image is known at pixel centres
            px, py = px.floor() + 0.5, py.floor() + 0.5
        return RayBatch(views, px, py)

    def draw_rays(self) -> RayBatch:
        """A batch: fresh rays, plus (ray-level AL) a share from the pool of hard rays."""
        n = self.cfg.batch_rays
        n_pool = int(n * self.cfg.active.pool_share) if self.cfg.active.ray and len(self.pool) else 0
        rays = self._fresh_rays(n - n_pool)
        hard = self.pool.draw(n_pool)
        return rays if hard is None else rays.cat(hard)

    # ------------------------------------------------------------------ step
    def losses(self, rays: RayBatch, progress: float) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """Total loss, its parts, and the per-ray squared error ``[R]`` of the student's rendering."""
        cfg, teacher, student, sampler = self.cfg, self.teacher, self.student, self.sampler
        origins, dirs = self.cameras.generate_rays(rays.views, rays.px, rays.py)
        n = len(rays)
        bg = torch.rand(n, 3, generator=self.generator)
        field_origins, field_dirs = sampler.to_field_space(origins, dirs)  # the teacher's space
        with torch.no_grad():
            s = sampler.sample(teacher, field_origins, field_dirs, stratified=True)
        ri = s.ray_indices
        mids = (s.t_starts + s.t_ends) * 0.5
        x = sampler.field_points(field_origins[ri] + field_dirs[ri] * mids[:, None])
        d = dirs[ri]  # fields see the capture's view directions, as in VolumeRenderer.render_rays
        with torch.no_grad():
            t = point_outputs(teacher, x, d)
            t_logit = t.logit.clamp(cfg.logit_min, cfg.logit_max)
            t_w, _, _ = render_weight_from_density(s.t_starts, s.t_ends, trunc_exp(t_logit), ri, n)
            if self.teacher_images is None:
                t_img = self._composite(t_w, t.rgb, ri, n, bg)
            else:
                t_img = self.teacher_images.lookup(rays, bg)
        pw = point_weights(t_w) if cfg.active.point else torch.ones_like(t_w)
        f = student.point_features(x)
        s_logit = f[:, 0].clamp(cfg.logit_min, cfg.logit_max)
        s_rgb = student.rgb_from_features(f, d)
        s_w, _, _ = render_weight_from_density(s.t_starts, s.t_ends, trunc_exp(s_logit), ri, n)
        s_img = self._composite(s_w, s_rgb, ri, n, bg)
        # A Gaussian teacher's mixture only approximates its rasterized scene (volume-rendered, lego's
        # 3DGS teacher scores 24 dB against its own 33 dB), so its points weigh less and its images
        # (exact) count from the first step.
        splat = self.teacher_images is not None
        stage = 3 if splat else stage_at(progress, cfg)
        point_scale = cfg.splat_point_weight if splat else 1.0
        mean = lambda per_point: (pw * per_point).mean() if per_point.numel() else per_point.sum()  # noqa: E731
        parts: dict[str, torch.Tensor] = {}
        if t.features is not None:
            target = torch.cat([t_logit[:, None], t.features[:, 1:]], dim=-1)
            parts["feature"] = feature_weight_at(progress, cfg) * mean(((f - target) ** 2).mean(-1))
        if stage >= 2 or t.features is None:
            parts["density"] = point_scale * cfg.density_weight * mean((f[:, 0] - t_logit) ** 2)
            parts["color"] = point_scale * cfg.color_weight * mean(((s_rgb - t.rgb) ** 2).mean(-1))
        ray_err = ((s_img - t_img) ** 2).mean(-1)
        if stage >= 3:
            parts["render"] = cfg.render_weight * ray_err.mean()
        loss = sum(parts.values())
        stats = {k: float(v.detach()) for k, v in parts.items()}
        stats.update(stage=stage, psnr=psnr_from_mse(ray_err.detach().mean()),
                     samples_per_ray=ri.numel() / max(n, 1))
        return loss, stats, ray_err.detach()

    @staticmethod
    def _composite(weights, rgb, ray_indices, n_rays, bg) -> torch.Tensor:
        img = accumulate_along_rays(weights, rgb, ray_indices, n_rays)
        opacity = accumulate_along_rays(weights, None, ray_indices, n_rays)
        return img + (1.0 - opacity) * bg

    def training_step(self, step: int, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        """One step's loss (the engine back-propagates and steps Adam) and statistics; the learning rate
        decays x0.1 over the run, after a short warm-up."""
        cfg = self.cfg
        warm = min(1.0, 0.01 + step / self.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * warm * 0.1**progress
        self.student.train()
        rays = self.draw_rays()
        loss, stats, ray_err = self.losses(rays, progress)
        self.views.observe(rays.views, ray_err)
        if cfg.active.ray:
            self.pool.push(rays, ray_err)
        stats["loss"] = float(loss.detach())
        return loss, stats

    def evaluate(self, step: int) -> dict[str, Any]:
        """The ``evaluate`` callable's metrics (nothing without one)."""
        return self._evaluate(step) if self._evaluate is not None else {}

    # ------------------------------------------------------------- checkpoints
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The student's weights, the generator and the active-learning state (the engine adds the rest)."""
        tensors = {**module_state("field", self.student), "rng/distill": self.generator.get_state(),
                   "active/view_mse": self.views.mse}
        if self.pool.rays is not None:
            pool = self.pool.rays
            tensors.update({"active/pool_views": pool.views, "active/pool_px": pool.px, "active/pool_py": pool.py})
        return tensors, {}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Continue from :meth:`state` (called by the engine after its own state)."""
        where = str(self.out_dir / CHECKPOINT) if self.out_dir else "checkpoint"
        load_module_state("field", self.student, tensors, where)
        try:
            self.generator.set_state(tensors["rng/distill"])
            self.views.mse = tensors["active/view_mse"].clone()
            self.pool.rays = RayBatch(tensors["active/pool_views"], tensors["active/pool_px"],
                                      tensors["active/pool_py"]) if "active/pool_views" in tensors else None
        except (KeyError, RuntimeError) as exc:
            raise OmnifieldError(f"{where}: checkpoint lacks a usable distillation state ({exc})") from None

    def write_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Store a checkpoint through ``save`` or into ``out_dir`` (nowhere without either)."""
        if self._save is not None:
            self._save(meta["step"], tensors, meta)
        elif self.out_dir is not None:
            save_checkpoint(self.out_dir / CHECKPOINT, tensors, meta)

    def fit(self, progress: bool | None = None) -> list[dict[str, Any]]:
        """Run until the loop's budget (``progress`` overrides its progress bar); returns the evaluations."""
        if progress is not None:
            self.engine.cfg = dataclasses.replace(self.engine.cfg, progress=progress)
        return self.engine.run()


def distill(teacher: nn.Module, student: nn.Module, sampler: VolumeRenderer, train_cameras: Cameras,
            cfg: PVDConfig, loop: LoopConfig, out_dir: str | Path, resume: bool = False,
            save: Callable[[int, dict, dict], None] | None = None,
            evaluate: Callable[[int], dict[str, Any]] | None = None) -> Distiller:
    """Distil ``teacher`` into ``student`` under ``loop`` with ``out_dir/log.jsonl`` and checkpoints
    (see :class:`Distiller`; ``save`` writes them elsewhere, e.g. ``Run.save``). ``resume`` continues
    from ``out_dir/checkpoint.safetensors``: the student's weights, optimiser, generators, active-learning
    state, step and training time, so the run goes on as if never stopped. Returns the distiller."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CHECKPOINT
    remove_stale_temporaries(path)
    distiller = Distiller(teacher, student, sampler, train_cameras, cfg, loop, out_dir, save, evaluate)
    log = out_dir / "log.jsonl"
    if resume:
        if not path.is_file():
            raise OmnifieldError(f"{out_dir}: nothing to resume (no {CHECKPOINT})")
        tensors, meta = load_checkpoint(path)
        distiller.engine.restore(tensors, meta, str(path))
    else:
        log.unlink(missing_ok=True)
    distiller.engine.log_path = log
    distiller.engine.run()
    return distiller
