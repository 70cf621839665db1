"""Training Gaussians from posed images (``omnifield train DATA --method splat``).

Data come from :func:`~omnifield.data.scene.load_scene` (any capture format, ``--downscale``): training
on the ``train`` split, evaluation on ``test`` (Blender's split files, else every 8th image by name).
Images with alpha are trained and scored on white (the NeRF-synthetic protocol). Real captures have no
alpha, so nothing says what lies behind the Gaussians: each step composites the render over a random
colour, which only matches the photo where the Gaussians cover it (opacity 1), and evaluation renders
on black. ``--init auto`` starts from the capture's sparse points, else, for photos without alpha (an LLFF
folder, a ``transforms.json`` without points), from points triangulated from the training photos with their
poses, else from random points in ``--aabb``.

Per step: one random training view is rendered, loss ``0.8 L1 + 0.2 (1 - SSIM)`` (+ the mask loss
for Compact-3DGS, + S3IM over 4096 random pixels with ``--loss.s3im-weight``), adaptive density control
(:mod:`.density_control`) between the backward pass and the step of Adam with 3DGS/gsplat learning rates
(means: ``1.6e-4 * scene_scale`` decayed 100x). The SH degree rises by one every ``--sh-interval`` steps. With
``--minutes`` the run is driven by time: densification starts at step ``--refine-start`` (or at
``--densify-from`` of the budget, if sooner: by default 1/60 for runs that start from sparse points), stops at
``--densify-until`` and RVQ (Compact-3DGS) starts at ``--rvq-from``.

The loop is the training engine's (:mod:`omnifield.engine`: budget, progress bar, ``log.jsonl``,
checkpoints, Ctrl-C, divergence guard); :class:`SplatTask` is the task. Its checkpoint is the run's
``checkpoint.safetensors`` (:mod:`omnifield.io.splat_run`), so ``--resume`` continues a run exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import torch

from omnifield.apps.splat.config import (
    FIELD_LR,
    FIELD_LR_DECAY_AT,
    LEARNING_RATES,
    SplatTrainConfig,
    resolve_densify_from,
    resolve_photo_regularisers,
)
from omnifield.apps.splat.density_control import DensityControl, DensityControlConfig
from omnifield.apps.splat.init import points_from_density, points_from_views, random_points
from omnifield.backend import missing_cuda_library_note, resolve_device
from omnifield.config import config_to_dict
from omnifield.data.blender import PosedImages
from omnifield.data.images import composite_on, to_uint8
from omnifield.data.scene import Scene, ScenePoints, load_scene
from omnifield.data.sparse_depth import SparseDepth, training_depths
from omnifield.data.triangulate import triangulate_views
from omnifield.engine import Engine, LoopConfig
from omnifield.errors import OmnifieldError
from omnifield.fields.compact_gaussians import CompactConfig, CompactGaussianScene
from omnifield.fields.gaussians import GaussianScene
from omnifield.io.atomic import atomic_path, write_text_atomic
from omnifield.io.checkpoint import load_checkpoint, remove_stale_temporaries
from omnifield.io.points import read_point_cloud
from omnifield.io.splat_ofz import save_compressed
from omnifield.io.splat_ply import save_splat_ply
from omnifield.io.splat_run import CHECKPOINT, save_splat_run, scene_from_checkpoint
from omnifield.losses.depth import sparse_depth_loss
from omnifield.losses.photometric import photometric_loss, s3im_on_pixels
from omnifield.losses.splat_shape import SCALE_RATIO_EVERY, SCALE_RATIO_WEIGHT, scale_ratio_loss
from omnifield.metrics import psnr, psnr_from_mse, ssim
from omnifield.renderers.space import detect_scene_type
from omnifield.renderers.splat import SplatRenderer

Watch = Callable[[GaussianScene, Engine], ContextManager]  # something to run beside training: the live viewer
FIELD_LR_WARMUP_STEPS = 100  # linear ramp from 1% (the paper's code)


def color_field_lr_factor(step: int, progress: float, decay_at: tuple[float, ...] = FIELD_LR_DECAY_AT) -> float:
    """Multiplier of the colour field's learning rate at ``step`` (from 1) and ``progress`` (fraction of
    the run, by steps or time): a linear warm-up from 0.01 over the first 100 steps, then x0.33 at each
    fraction in ``decay_at`` that the run has passed."""
    warmup = min(1.0, 0.01 + 0.99 * step / FIELD_LR_WARMUP_STEPS)
    return warmup * 0.33 ** sum(progress >= fraction for fraction in decay_at)


def scene_scale_of(cameras) -> float:
    """gsplat's scene scale: 1.1 x the largest distance of a camera centre from their mean."""
    centres = cameras.c2w[:, :3, 3]
    return 1.1 * float((centres - centres.mean(0)).norm(dim=-1).max())


def resolve_init(init: str, data: Scene) -> str:
    """``--init auto`` -> ``scene`` when the capture has sparse points, ``triangulate`` for other photos without
    alpha (real captures), else ``random``; other choices are checked against what the capture offers."""
    if init == "auto":
        if data.points is not None:
            return "scene"
        return "triangulate" if data.images.shape[-1] != 4 and len(data.images) >= 2 else "random"
    if init == "scene" and data.points is None:
        raise OmnifieldError("--init scene: this capture has no sparse points (COLMAP points3D or ply_file_path)")
    if init == "triangulate" and len(data.images) < 2:
        raise OmnifieldError("--init triangulate needs at least 2 training photos")
    if init == "views" and data.near_far is None:
        raise OmnifieldError("--init views: this capture has no per-view depth bounds")
    return init


def initial_points(init: str, cfg: SplatTrainConfig, generator: torch.Generator, data: Scene) -> ScenePoints:
    """The starting points of ``init`` (a resolved choice) for ``data``, in box units (tracks when triangulated)."""
    if init == "scene":
        return data.points
    if init == "triangulate":
        return triangulate_views(data.images, data.cameras)
    return ScenePoints(*_other_points(init, cfg, generator, data))


def _other_points(init: str, cfg: SplatTrainConfig, generator: torch.Generator,
                  data: Scene) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``[P, 3]`` (box units) and colours ``[P, 3]`` of the choices that find no tracks."""
    if init == "views":
        return points_from_views(data.images, data.cameras, data.near_far, cfg.n_init, generator)
    if init == "points":
        if not cfg.init_points:
            raise OmnifieldError("--init points needs --init-points FILE")
        pts, colors = read_point_cloud(cfg.init_points)  # in the capture's world units, like the exports
        return torch.as_tensor(data.normalization.to_box(pts.double().numpy()), dtype=torch.float32), colors
    if init == "nerf":
        if not cfg.init_nerf:
            raise OmnifieldError("--init nerf needs --init-nerf RUN_FOLDER")
        from omnifield.apps.recon.run import Run
        from omnifield.io.checkpoint import load_module_state

        run, tensors, _ = Run.open(cfg.init_nerf)
        load_module_state("field", run.field, tensors, str(cfg.init_nerf))
        return points_from_density(run.field.eval(), cfg.n_init, generator)
    return random_points(cfg.n_init, torch.tensor(cfg.aabb, dtype=torch.float32), generator)


def initial_scene(cfg: SplatTrainConfig, generator: torch.Generator,
                  data: Scene) -> tuple[GaussianScene, str, ScenePoints]:
    """The starting Gaussians for ``data``, the initialisation used (``cfg.init`` resolved by :func:`resolve_init`)
    and the points they were made from.

    Under ``--init auto``, a capture where too few points can be triangulated falls back to points on the
    training rays (``views``, with depth bounds) or random points, saying so; ``--init triangulate`` fails."""
    init = resolve_init(cfg.init, data)
    try:
        points = initial_points(init, cfg, generator, data)
    except OmnifieldError as exc:
        if not (init == "triangulate" and cfg.init == "auto"):
            raise
        init = "views" if data.near_far is not None else "random"
        print(f"note: {exc}; starting from {init} points instead")
        points = initial_points(init, cfg, generator, data)
    return GaussianScene.from_points(points.xyz, points.rgb, sh_degree=cfg.sh_degree), init, points


def sparse_depth_of(data: Scene, start: ScenePoints, init_tried_triangulation: bool,
                    required: bool) -> SparseDepth | None:
    """Depth samples of the training views for the sparse depth loss (:func:`training_depths`): the tracks of
    the starting points when they were triangulated, else points triangulated for the purpose (unless the
    initialisation tried already). ``required``: an explicit ``--depth-weight``."""
    return training_depths(data.images, data.cameras, start, triangulate=not init_tried_triangulation,
                           required=required, option="--depth-weight")


def make_optimizer(scene: GaussianScene, scene_scale: float, mask_lr: float = LEARNING_RATES["mask_logits"],
                   color_lr: float = FIELD_LR) -> torch.optim.Adam:
    """Adam with one group per per-Gaussian parameter (named), plus the colour field for Compact-3DGS
    (with Instant-NGP's beta2 = 0.99: rows of the hash table that few Gaussians touch adapt faster)."""
    rates = {**LEARNING_RATES, "mask_logits": mask_lr}
    groups = []
    for name in scene.gaussian_parameter_names():
        lr = rates[name] * (scene_scale if name == "means" else 1.0)
        groups.append({"params": [getattr(scene, name)], "lr": lr, "name": name, "base_lr": lr})
    if isinstance(scene, CompactGaussianScene):
        field_params = list(scene.color_grid.parameters()) + list(scene.color_mlp.parameters())
        groups.append({"params": field_params, "lr": color_lr, "name": "color_field", "base_lr": color_lr,
                       "betas": (0.9, 0.99)})  # Instant-NGP's Adam for hash grids, as in apps/fit
    return torch.optim.Adam(groups, eps=1e-15)


def restored_view_order(tensors: dict[str, torch.Tensor], generator: torch.Generator, n_views: int,
                        owner: str) -> torch.Tensor:
    """Set ``generator`` from a checkpoint's ``train/generator`` and return its view order ``train/order``
    (``[V]``), checked to be a permutation of the ``n_views`` views that ``owner`` ("the data have") has;
    raises KeyError, ValueError or RuntimeError for the caller to turn into one clear error."""
    generator.set_state(tensors["train/generator"])
    order = tensors["train/order"].long()
    if sorted(order.tolist()) != list(range(n_views)):
        raise ValueError(f"its view order covers {len(order)} views, {owner} {n_views}")
    return order


class SplatTask:
    """Gaussian splatting as a task of the training engine: one training view per step.

    ``scene`` (already on its device) is trained on ``data`` (the ``train`` split) under ``cfg``; views come
    in a random order drawn once from ``generator`` (then cycled). The engine back-propagates the loss;
    :meth:`after_backward` runs density control between the backward pass and Adam's step, since it reads the
    screen-space gradients and resizes the parameters and their moments. Checkpoints are the run's
    ``checkpoint.safetensors`` in ``out_dir`` with ``record`` as its settings. With ``sparse_depth`` (the
    training views' sparse depth samples) the loss adds ``cfg.depth_weight`` x :func:`sparse_depth_loss`.
    """

    def __init__(self, scene: GaussianScene, data: Scene, cfg: SplatTrainConfig, generator: torch.Generator,
                 out_dir: Path, record: dict[str, Any], log_every: int = 100, sparse_depth: SparseDepth | None = None):
        self.scene, self.cfg, self.generator = scene, cfg, generator
        self.sparse_depth = None if sparse_depth is None else sparse_depth.to(scene.means.device)
        self.out_dir, self.record, self.log_every = out_dir, record, log_every
        device = scene.means.device
        self.random_background = data.images.shape[-1] != 4
        background = torch.zeros(3) if self.random_background else torch.ones(3)
        self.images = composite_on(data.images, background).to(device)  # [V, H, W, 3]
        self.cameras = data.cameras.to(device)
        self.scale = scene_scale_of(data.cameras)
        self.optimizer = make_optimizer(scene, self.scale, cfg.mask_lr, cfg.color_lr)
        control_cfg = DensityControlConfig(refine_start_iter=cfg.refine_start, refine_every=cfg.refine_every,
                                           reset_every=cfg.reset_every, max_gaussians=cfg.max_gaussians,
                                           unseen_after=len(self.images))  # the views are cycled
        self.control = DensityControl(control_cfg, self.scale)
        self.renderer = SplatRenderer(background=tuple(background.tolist()))
        self.order = torch.randperm(len(self.images), generator=generator)  # [V] views, cycled
        self._info: dict[str, Any] | None = None  # the step's render, read by density control

    # ------------------------------------------------------------------- step
    def training_step(self, step: int, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        """Render view ``order[(step + 1) % V]`` and return its loss; statistics for the engine's log."""
        cfg, scene, control = self.cfg, self.scene, self.control
        if progress >= cfg.densify_from and control.cfg.refine_start_iter > step:
            control.cfg.refine_start_iter = step
        if progress >= cfg.densify_until and control.cfg.refine_stop_iter > step:
            control.cfg.refine_stop_iter = step
        if isinstance(scene, CompactGaussianScene) and not scene.use_rvq and progress >= cfg.rvq_from:
            scene.enable_rvq()
        step += 1  # density control and the schedules count steps from 1
        scene.set_sh_degree_for_step(step, cfg.sh_interval)
        for group in self.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = group["base_lr"] * 0.01**progress
            elif group["name"] == "color_field":
                group["lr"] = group["base_lr"] * color_field_lr_factor(step, progress, cfg.color_lr_decay_at)
        view = int(self.order[step % len(self.order)])
        out = self.renderer.render_camera(scene, self.cameras, view, depth=self.sparse_depth is not None)
        if self.random_background:  # rendered on black: add a random colour where the Gaussians leave light through
            bg = torch.rand(3, generator=self.generator).to(out["rgb"].device)
            out["rgb"] = out["rgb"] + (1.0 - out["alpha"][..., None]) * bg
        target = self.images[view]
        loss = photometric_loss(out["rgb"], target)
        if cfg.s3im_weight > 0:
            loss = loss + cfg.s3im_weight * s3im_on_pixels(out["rgb"], target, self.generator)
        if isinstance(scene, CompactGaussianScene):
            loss = loss + scene.mask_loss()
        if cfg.max_scale_ratio > 0 and step % SCALE_RATIO_EVERY == 0:
            loss = loss + SCALE_RATIO_WEIGHT * scale_ratio_loss(scene.log_scales, cfg.max_scale_ratio)
        if self.sparse_depth is not None:
            loss = loss + cfg.depth_weight * sparse_depth_loss(out["depth"], *self.sparse_depth.view(view), self.scale)
        self._info = {**out, "width": self.cameras.width, "height": self.cameras.height}
        stats = {"loss": float(loss.detach()), "n_gaussians": len(scene)}
        if step % self.log_every == 0 or step == 1:  # only the engine's log lines show it
            with torch.no_grad():
                stats["psnr"] = psnr_from_mse(float(torch.nn.functional.mse_loss(out["rgb"], target)))
        return loss, stats

    def after_backward(self, step: int) -> dict[str, int]:
        """Adaptive density control on the step's screen-space gradients (before Adam's step)."""
        info, self._info = self._info, None
        return self.control.step_post_backward(self.scene, self.optimizer, info, step + 1)

    # ------------------------------------------------------------------ state
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Generator, view order, density-control accumulators and schedule (the engine adds the step, the
        torch RNG and Adam's moments; the Gaussians are written beside them by :meth:`write_checkpoint`)."""
        tensors = {"train/generator": self.generator.get_state(), "train/order": self.order}
        if self.sparse_depth is not None:
            tensors.update(self.sparse_depth.tensors("train/depth_"))
        if self.control.grad2d is not None:
            tensors.update({"train/grad2d": self.control.grad2d, "train/count": self.control.count})
        if self.control.last_seen is not None:
            tensors["train/last_seen"] = self.control.last_seen
        if self.scene.means.is_cuda:  # splitting draws on the device
            tensors["rng/cuda"] = torch.cuda.get_rng_state(self.scene.means.device)
        return tensors, {"refine_start_iter": self.control.cfg.refine_start_iter,
                         "refine_stop_iter": self.control.cfg.refine_stop_iter}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Continue from :meth:`state` (the scene itself is re-opened from the same checkpoint beforehand)."""
        try:
            self.order = restored_view_order(tensors, self.generator, len(self.images), "the data have")
            if self.cfg.depth_weight > 0:
                self.sparse_depth = SparseDepth.from_tensors(tensors, "train/depth_").to(self.scene.means.device)
            self.control.cfg.refine_start_iter = int(meta.get("refine_start_iter", self.cfg.refine_start))
            self.control.cfg.refine_stop_iter = int(meta["refine_stop_iter"])
            device = self.scene.means.device
            if "train/grad2d" in tensors:
                self.control.grad2d = tensors["train/grad2d"].to(device)
                self.control.count = tensors["train/count"].to(device)
            if "train/last_seen" in tensors:
                self.control.last_seen = tensors["train/last_seen"].to(device)
            if "rng/cuda" in tensors and self.scene.means.is_cuda:
                torch.cuda.set_rng_state(tensors["rng/cuda"], device)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise OmnifieldError(f"{self.out_dir / CHECKPOINT}: checkpoint lacks a usable training state "
                                 f"({exc})") from None

    def write_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """The run's checkpoint: the Gaussians, the settings and the training state, atomically."""
        save_splat_run(self.out_dir, self.scene, int(meta["step"]), self.record, (tensors, meta))


def train_splat(data_dir: Path, out_dir: Path, cfg: SplatTrainConfig, loop: LoopConfig, device: str = "auto",
                resume: bool = False, watch: Watch | None = None) -> dict[str, Any]:
    """Train on the ``train`` split of ``data_dir`` (any capture format, at ``cfg.downscale``) for ``loop``'s
    budget, write the run to ``out_dir``; returns its metrics (on the ``test`` split unless not
    ``cfg.evaluate``).

    ``resume`` continues the run in ``out_dir`` from its checkpoint (``cfg`` must be the run's settings,
    :func:`~omnifield.apps.splat.cli.splat_configs` reads them). ``device`` (``auto``/``cpu``/``cuda``/
    ``cuda:N``) picks where the Gaussians live; on CUDA the renderer uses gsplat when it is installed, else the
    same torch rasterizer as on the CPU. ``watch(scene, engine)``, a context-manager factory, is entered around
    the training (the live viewer, which renders the scene between steps through ``engine.between_steps``).
    """
    cfg.check()
    loop.check()
    device = resolve_device(device)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    checkpoint = out_dir / CHECKPOINT
    train = load_scene(data_dir, "train", cfg.downscale)
    init_seconds = None  # the initial Gaussians' cost, outside the training budget (triangulation takes seconds)
    sparse_depth = None  # depth samples of the sparse depth loss (a resumed run reads its own from the checkpoint)
    if resume:
        tensors, meta = load_checkpoint(checkpoint)
        scene = scene_from_checkpoint(tensors, meta, checkpoint)
        if "training" not in meta:
            raise OmnifieldError(f"{checkpoint}: holds no training state (written by an older omnifield or by "
                                 "convert), so it cannot continue; train into a new --out")
        views = meta.get("config", {}).get("train_views")
        if views != train.names:
            raise OmnifieldError(f"{out_dir} was trained on other views than the train split of {data_dir}")
        generator = torch.Generator()  # its state comes from the checkpoint
        if cfg.densify_from is None:  # a run recorded before --densify-from: density control from --refine-start
            cfg = replace(cfg, densify_from=1.0)
        # recorded before --depth-weight / --max-scale-ratio: neither
        cfg = replace(cfg, depth_weight=cfg.depth_weight or 0.0, max_scale_ratio=cfg.max_scale_ratio or 0.0)
    else:
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        t0 = time.perf_counter()
        scene, init, start = initial_scene(cfg, generator, train)
        scene_type = detect_scene_type(train.cameras.c2w, has_alpha=train.images.shape[-1] == 4)
        depth_weight, max_scale_ratio = resolve_photo_regularisers(cfg.depth_weight, cfg.max_scale_ratio, scene_type)
        if depth_weight > 0:
            sparse_depth = sparse_depth_of(train, start, resolve_init(cfg.init, train) == "triangulate",
                                           required=cfg.depth_weight is not None)
            depth_weight = depth_weight if sparse_depth is not None else 0.0
        init_seconds = round(time.perf_counter() - t0, 1)
        cfg = replace(cfg, init=init, densify_from=resolve_densify_from(cfg.densify_from, len(scene), cfg.n_init),
                      depth_weight=depth_weight, max_scale_ratio=max_scale_ratio)
        if cfg.compact:
            scene = CompactGaussianScene.from_scene(scene, torch.tensor(cfg.aabb),
                                                    CompactConfig(mask_lambda=cfg.mask_lambda))
    record = {"method": "splat", "data": str(data_dir), "options": config_to_dict(cfg), "loop": config_to_dict(loop),
              "train_views": train.names}
    task = SplatTask(scene.to(device), train, cfg, generator, out_dir, record, loop.log_every, sparse_depth)
    engine = Engine(task, loop, log_path=out_dir / "log.jsonl", description="splat",
                    postfix=("loss", "psnr", "n_gaussians"), where=str(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(checkpoint)
    if resume:
        engine.restore(tensors, meta["training"], str(checkpoint))
        print(f"resuming {out_dir} at step {engine.step} ({len(scene)} Gaussians)")
    else:
        write_text_atomic(out_dir / "log.jsonl", "")
        on_device = f", on {device}" if device.type != "cpu" else ""
        depth_note = "" if sparse_depth is None else (f", depth loss x{cfg.depth_weight:g} on {len(sparse_depth)} "
                                                      "sparse depths")
        print(f"training splat{' (compact)' if cfg.compact else ''} from {len(scene)} Gaussians "
              f"({cfg.init} init in {init_seconds:.0f} s, scene scale {task.scale:.3g}) on {data_dir} ({len(train.images)} views, "
              f"{task.cameras.width}x{task.cameras.height}{on_device}, "
              f"{'random' if task.random_background else 'white'} background{depth_note}) -> {out_dir}")
    note = missing_cuda_library_note(device, "gsplat", "rasterization")
    if note:
        print(note)
    with watch(task.scene, engine) if watch is not None else contextlib.nullcontext():
        engine.run()
    scene = task.scene.eval()
    files = {"ply": out_dir / "scene.ply"}
    save_splat_ply(scene.to_plain_scene() if isinstance(scene, CompactGaussianScene) else scene, files["ply"])
    metrics: dict[str, Any] = {"method": "splat-compact" if cfg.compact else "splat", "steps": engine.step,
                               "train_seconds": round(engine.elapsed, 1), "n_gaussians": len(scene),
                               "ply_mb": files["ply"].stat().st_size / 1e6}
    if init_seconds is not None:
        metrics["init_seconds"] = init_seconds
    if isinstance(scene, CompactGaussianScene):
        metrics["n_gaussians"] = int((~scene.prune_mask()).sum())
        metrics["compressed_mb"] = save_compressed(scene, out_dir / "scene.ofz") / 1e6
    metrics["size_mb"] = metrics.get("compressed_mb", metrics["ply_mb"])
    if cfg.evaluate:
        test = load_scene(data_dir, "test", cfg.downscale)
        metrics.update(evaluate_splat(scene, test, task.renderer, out_dir / "renders" / "test", cfg.eval_views))
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    print(json.dumps(metrics))
    return metrics


@torch.no_grad()
def evaluate_splat(scene: GaussianScene, data: PosedImages, renderer: SplatRenderer,
                   render_dir: Path | None = None, limit: int = 0) -> dict[str, Any]:
    """Test-split PSNR / SSIM (images with alpha composited on the renderer's background) and render speed
    (frames/s) over the first ``limit`` views (0 = all)."""
    import imageio.v3 as iio

    background = torch.tensor(renderer.background)
    targets = composite_on(data.images[: limit or None], background)
    psnrs, ssims, seconds = [], [], 0.0
    on_cuda = scene.means.is_cuda
    for i in range(len(targets)):
        t0 = time.perf_counter()
        rgb = renderer.render_camera(scene, data.cameras, i)["rgb"].clamp(0, 1)
        if on_cuda:
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        rgb = rgb.cpu()
        psnrs.append(psnr(rgb, targets[i]))
        ssims.append(float(ssim(rgb, targets[i])))
        if render_dir is not None:
            render_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(render_dir / f"{i:03d}.png") as tmp:
                iio.imwrite(tmp, to_uint8(rgb), extension=".png")
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "n_views": len(targets),
            "render_fps": len(targets) / max(seconds, 1e-9)}
