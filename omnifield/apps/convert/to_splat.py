"""Field -> Gaussians: splats initialised from the teacher's density and fitted to the teacher's renders.

The teacher (any radiance field) is seen from ``teacher_views`` cameras: half of them training cameras
(at most all of them), the rest random sphere poses (:mod:`omnifield.distill.poses`), at the resolution the
teacher was trained at. Gaussians start at points drawn where the teacher is dense, coloured by the teacher
(:func:`omnifield.apps.splat.init.points_from_density`), and are optimised with the 3DGS photometric loss
(``0.8 L1 + 0.2 (1 - SSIM)``) and Adam with the 3DGS learning rates
(:func:`omnifield.apps.splat.train.make_optimizer`). No density control: the count stays as initialised.

:class:`SplatDistillTask` is a task of the training engine (:mod:`omnifield.engine`: budget, progress bar,
``log.jsonl``, checkpoints, Ctrl-C, divergence guard). Step ``s`` (from 0) fits view ``order[s % V]`` of a
seeded permutation; a teacher view is rendered the first time a step needs it (:class:`TeacherViews`), so
its cost falls inside the training budget and a short budget renders only the views it uses. The output is
a splat run folder (:func:`~omnifield.io.splat_run.save_splat_run`) whose checkpoint holds the Gaussians,
Adam's moments, the generator and the view order — not the teacher's images, which a resumed run renders
again, identically, when it needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from omnifield.apps.splat.init import points_from_density
from omnifield.apps.splat.train import make_optimizer, restored_view_order, scene_scale_of
from omnifield.config import config_from_dict, config_to_dict, register_config
from omnifield.data.scene import Scene
from omnifield.distill.poses import join_cameras, sphere_cameras
from omnifield.engine import Engine, LoopConfig
from omnifield.errors import OmnifieldError
from omnifield.fields.gaussians import GaussianScene
from omnifield.io.atomic import write_text_atomic
from omnifield.io.checkpoint import load_checkpoint, remove_stale_temporaries
from omnifield.io.splat_run import CHECKPOINT, save_splat_run, scene_from_checkpoint
from omnifield.losses.photometric import photometric_loss
from omnifield.metrics import psnr_from_mse
from omnifield.renderers.cameras import Cameras
from omnifield.renderers.splat.renderer import SplatRenderer
from omnifield.renderers.volume import VolumeRenderer


@register_config("splat_distill")
@dataclass
class SplatDistillConfig:
    """A conversion to Gaussians: how many (``n_gaussians``), of which SH degree, fitted to how many teacher
    views (``teacher_views``: half training cameras, half sphere poses), drawn from ``seed``."""

    n_gaussians: int = 20000
    teacher_views: int = 64
    sh_degree: int = 1
    seed: int = 0

    def check(self) -> None:
        """Refuse settings that cannot convert (one :class:`OmnifieldError` line naming the option)."""
        for option, value in (("--n-gaussians", self.n_gaussians), ("--teacher-views", self.teacher_views)):
            if value < 1:
                raise OmnifieldError(f"{option} must be >= 1, got {value}")
        if not 0 <= self.sh_degree <= 3:
            raise OmnifieldError(f"the SH degree must be 0..3, got {self.sh_degree}")


def teacher_cameras(train_cameras: Cameras, n: int, generator: torch.Generator) -> Cameras:
    """``n`` cameras: ``ceil(n / 2)`` training cameras picked at random (at most all of them), then random
    sphere poses for the rest (with 100 training cameras and ``n = 64``: 32 + 32)."""
    n_train = min((n + 1) // 2, len(train_cameras))
    pick = torch.randperm(len(train_cameras), generator=generator)[:n_train]
    return join_cameras(train_cameras[pick], sphere_cameras(train_cameras, n - n_train, generator))


class TeacherViews:
    """The teacher's images ``[H, W, 3]`` (on ``background [3]``) from each of ``cameras``, each rendered the
    first time it is asked for and kept; ``renders`` counts the renders so far."""

    def __init__(self, teacher: nn.Module, renderer: VolumeRenderer, cameras: Cameras, background: torch.Tensor):
        self.teacher, self.renderer, self.cameras, self.background = teacher, renderer, cameras, background
        self.images: list[torch.Tensor | None] = [None] * len(cameras)
        self.renders = 0

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def __getitem__(self, view: int) -> torch.Tensor:
        image = self.images[view]
        if image is None:
            image = self.renderer.render_image(self.teacher, self.cameras, view, self.background)["rgb"].clamp(0, 1)
            self.images[view] = image
            self.renders += 1
        return image


class SplatDistillTask:
    """Gaussians fitted to a teacher's views as a task of the training engine: one view per step.

    ``scene`` learns ``views`` (a :class:`TeacherViews`) in a random order drawn once from ``generator``
    (then cycled); its SH degree rises with the run's progress in ``sh_degree + 1`` equal parts. Checkpoints
    are the run's ``checkpoint.safetensors`` in ``out_dir`` with ``record`` as its settings.
    """

    def __init__(self, scene: GaussianScene, views: TeacherViews, generator: torch.Generator, out_dir: Path,
                 record: dict[str, Any], log_every: int = 100):
        self.scene, self.views, self.generator = scene, views, generator
        self.out_dir, self.record, self.log_every = out_dir, record, log_every
        self.optimizer = make_optimizer(scene, scene_scale_of(views.cameras))
        self.renderer = SplatRenderer(background=tuple(views.background.tolist()))
        self.order = torch.randperm(len(views), generator=generator)  # [V] views, cycled

    def training_step(self, step: int, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        """Render view ``order[step % V]`` and return its loss against the teacher's image."""
        scene = self.scene
        scene.active_sh_degree = min(scene.max_sh_degree, int(progress * (scene.max_sh_degree + 1)))
        view = int(self.order[step % len(self.order)])
        target = self.views[view].to(scene.means.device)
        rgb = self.renderer.render_camera(scene, self.views.cameras, view)["rgb"]
        loss = photometric_loss(rgb, target)
        stats = {"loss": float(loss.detach()), "teacher_renders": self.views.renders}
        if (step + 1) % self.log_every == 0 or step == 0:  # only the engine's log lines show it
            with torch.no_grad():
                stats["psnr"] = psnr_from_mse(float(torch.nn.functional.mse_loss(rgb, target)))
        return loss, stats

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Generator and view order (the engine adds the step, the torch RNG and Adam's moments; the
        Gaussians are written beside them by :meth:`write_checkpoint`)."""
        return {"train/generator": self.generator.get_state(), "train/order": self.order}, {}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Continue from :meth:`state` (the scene itself is re-opened from the same checkpoint beforehand)."""
        try:
            self.order = restored_view_order(tensors, self.generator, len(self.views), "the conversion has")
        except (KeyError, ValueError, RuntimeError) as exc:
            raise OmnifieldError(f"{self.out_dir / CHECKPOINT}: checkpoint lacks a usable conversion state "
                                 f"({exc})") from None

    def write_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """The run's checkpoint: the Gaussians, the settings and the training state, atomically."""
        save_splat_run(self.out_dir, self.scene, int(meta["step"]), self.record, (tensors, meta))


def _resumed_settings(out_dir: Path, train: Scene) -> tuple[dict, dict, SplatDistillConfig]:
    """``(tensors, meta, cfg)`` of the conversion checkpointed in ``out_dir``, checked against ``train``."""
    checkpoint = out_dir / CHECKPOINT
    if not checkpoint.is_file():
        raise OmnifieldError(f"{out_dir}: nothing to resume (no {CHECKPOINT})")
    tensors, meta = load_checkpoint(checkpoint)
    record = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    cfg = config_from_dict(record.get("distill"), f"{checkpoint} config.distill")
    if not isinstance(cfg, SplatDistillConfig) or "training" not in meta:
        raise OmnifieldError(f"{checkpoint}: not a resumable conversion to splat (written by an older omnifield "
                             "or by train); convert into a new --out")
    if record.get("train_views") != train.names:
        raise OmnifieldError(f"{out_dir} was converted from other views than the teacher's train split")
    return tensors, meta, cfg


def distill_to_splat(teacher: nn.Module, renderer: VolumeRenderer, train: Scene, cfg: SplatDistillConfig,
                     loop: LoopConfig, out_dir: str | Path, record: dict[str, Any],
                     resume: bool = False) -> tuple[GaussianScene, Engine]:
    """Fit Gaussians to ``teacher`` (rendered by ``renderer``) seen from cameras around its ``train`` split
    (at the teacher's resolution) for ``loop``'s budget, as a splat run in ``out_dir`` with ``record`` (plus
    ``cfg``, the loop and the view names) as its settings; returns the scene (eval mode) and the engine
    (``step``, ``elapsed``; ``task.views.renders``: teacher renders done).

    ``resume`` continues the conversion in ``out_dir`` from its checkpoint with the settings stored there
    (``cfg`` is then ignored).
    """
    out_dir = Path(out_dir)
    if resume:
        tensors, meta, cfg = _resumed_settings(out_dir, train)
        scene = scene_from_checkpoint(tensors, meta, out_dir / CHECKPOINT)
    cfg.check()
    generator = torch.Generator().manual_seed(cfg.seed)  # a resumed run takes its state from the checkpoint
    cameras = teacher_cameras(train.cameras, cfg.teacher_views, generator)
    if not resume:
        torch.manual_seed(cfg.seed)
        points, colors = points_from_density(teacher, cfg.n_gaussians, generator)
        scene = GaussianScene.from_points(points, colors, sh_degree=cfg.sh_degree)
    record = {**record, "distill": config_to_dict(cfg), "loop": config_to_dict(loop), "train_views": train.names}
    views = TeacherViews(teacher, renderer, cameras, torch.ones(3))
    task = SplatDistillTask(scene, views, generator, out_dir, record, loop.log_every)
    engine = Engine(task, loop, log_path=out_dir / "log.jsonl", description="fitting splats",
                    postfix=("loss", "psnr", "teacher_renders"), where=str(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir / CHECKPOINT)
    if resume:
        engine.restore(tensors, meta["training"], str(out_dir / CHECKPOINT))
        print(f"resuming {out_dir} at step {engine.step} ({len(scene)} Gaussians)")
    else:
        write_text_atomic(out_dir / "log.jsonl", "")
    engine.run()
    return task.scene.eval(), engine
