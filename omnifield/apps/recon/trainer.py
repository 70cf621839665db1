"""``Trainer``: fits any radiance field to posed images through the volume renderer.

Per step: random rays over all training pixels (a seeded generator), random background
colours composited into RGBA targets, occupancy-grid refresh, render, MSE, Adam. Real captures
add per-image pose corrections (applied to the batch's rays) and per-image appearance codes. The number
of rays adapts so that each step carries about ``target_samples`` samples (as nerfacc).
The loop itself (budget, checkpoints, resume, Ctrl-C, divergence, log) is the training engine's
(:mod:`omnifield.engine`); this module is the task: batches, loss, learning-rate schedule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from omnifield.apps.recon.config import TrainConfig
from omnifield.apps.recon.run import CHECKPOINT, Run
from omnifield.data.blender import PosedImages
from omnifield.data.images import composite_on
from omnifield.data.sparse_depth import SparseDepth
from omnifield.distributed import broadcast_from_main, current, shard, sum_over_ranks
from omnifield.engine import Engine, EngineTask, LoopConfig
from omnifield.errors import OmnifieldError
from omnifield.io.checkpoint import remove_stale_temporaries
from omnifield.metrics import psnr_from_mse

DEPTH_PREFIX = "train/depth_"  # the sparse depth samples in a checkpoint


def lr_factor(progress: float, step: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup_steps``, then step decay at 50/75/90 %."""
    warm = min(1.0, 0.01 + 0.99 * step / max(cfg.warmup_steps, 1))
    decays = sum(progress >= m for m in (0.5, 0.75, 0.9))
    return warm * cfg.decay_gamma**decays


def make_optimizer(field: torch.nn.Module, cfg: TrainConfig, camera_opt: nn.Module | None = None,
                   renderer: nn.Module | None = None) -> torch.optim.Optimizer:
    """Fused Adam: weight decay on decoder weight matrices only (never on grids/tables of features,
    CAM's modulation grids inside a decoder included). The renderer's own fields (the proposal sampler's
    density fields) train at the same rate, without weight decay, as nerfacto's. Pose corrections get their
    own group: peak learning rate ``cfg.camera_opt_lr``, no weight decay. Each group keeps its peak rate as
    ``base_lr``."""
    decay, no_decay = [], []
    for name, p in field.named_parameters():
        weight_matrix = "decoder" in name and p.dim() == 2
        (decay if weight_matrix else no_decay).append(p)
    if renderer is not None:
        no_decay.extend(renderer.parameters())
    groups = [{"params": no_decay, "weight_decay": 0.0, "base_lr": cfg.lr},
              {"params": decay, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr}]
    if camera_opt is not None:
        groups.append({"params": list(camera_opt.parameters()), "weight_decay": 0.0, "lr": cfg.camera_opt_lr,
                       "base_lr": cfg.camera_opt_lr})
    # the fused kernel is ~8x faster than the default on CPU (12M hash-table entries: 7 ms vs 53 ms per step)
    return torch.optim.Adam([g for g in groups if g["params"]], lr=cfg.lr, eps=cfg.eps, fused=True)


class _RayRendering(nn.Module):
    """``(origins, directions, background, jitter, camera_ids) -> (rgb [R, 3], n_samples, pose penalty [],
    distortion [], interlevel [])`` (the batch's mean distortion loss, 0 unless ``distortion``; its mean
    interlevel loss, 0 unless the renderer samples with proposal fields):
    the one forward that ``DistributedDataParallel`` wraps, so gradients of the field, the appearance
    codes and the pose corrections are averaged across ranks. Rays are moved to the refined poses and
    each ray gets its image's appearance code here."""

    def __init__(self, field: nn.Module, renderer: nn.Module, camera_opt: nn.Module | None, distortion: bool):
        super().__init__()
        self.field, self.renderer, self.camera_opt = field, renderer, camera_opt
        self.distortion = distortion
        self.interlevel = renderer.cfg.sampler == "proposal"

    def forward(self, origins, directions, background, jitter, camera_ids, surface_distances):
        penalty = origins.new_zeros(())
        known = surface_distances > 0  # rays that end on a known surface (a structure-from-motion point)
        surfaces = origins[known] + directions[known] * surface_distances[known, None]
        if self.camera_opt is not None:
            origins, directions = self.camera_opt.apply(camera_ids, origins, directions)
            penalty = self.camera_opt.penalty()
        appearance = getattr(self.field, "appearance", None)
        codes = None if appearance is None else appearance(camera_ids)
        depth_rays = bool(known.any())
        out = self.renderer.render_rays(self.field, origins, directions, background, stratified=True, jitter=jitter,
                                        appearance=codes, distortion=self.distortion, interlevel=self.interlevel,
                                        unit_depth=depth_rays)
        spread = out.distortion.mean() if self.distortion else penalty.new_zeros(())
        inter = out.interlevel.mean() if self.interlevel else penalty.new_zeros(())
        depth_error = penalty.new_zeros(())
        if depth_rays:
            target = self.renderer.unit_depth_of(origins[known], directions[known], surfaces)
            depth_error = (out.unit_depth[known] - target).abs().mean()
        return out.rgb, out.n_samples, penalty, spread, inter, depth_error


class Trainer(EngineTask):
    """Trains ``run.field`` on ``data``: the radiance-field task of the training engine.

    ``eval_fn(run, step) -> dict`` runs every ``eval_every`` steps and whenever the training time
    passes one of ``eval_at_seconds`` (evaluation time is not counted as training time). ``tensorboard``
    also logs to TensorBoard in the run folder.

    Under torchrun (see :mod:`omnifield.distributed`) every rank draws the same global batch and
    renders its shard; DDP averages the gradients, the occupancy grid follows rank 0, the ray
    count and the stopping time are agreed across ranks, and rank 0 alone writes checkpoints.
    """

    counters = ("rays",)

    def __init__(self, run: Run, data: PosedImages, eval_fn: Callable[[Run, int], dict] | None = None,
                 eval_every: int = 0, eval_at_seconds: tuple[float, ...] = (), progress: bool = True,
                 tensorboard: bool = False, sparse_depth: SparseDepth | None = None):
        self.run, self.cfg = run, run.train_config
        self.eval_fn = eval_fn
        self.group = current()
        self.rendering = _RayRendering(run.field, run.renderer, run.camera_opt, self.cfg.distortion_weight > 0)
        self.device = run.device
        if self.group.active:  # buffers: the occupancy grid is broadcast after each update instead
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.rendering = nn.parallel.DistributedDataParallel(self.rendering, device_ids=ids, broadcast_buffers=False,
                                                                 find_unused_parameters=True)
        self.optimizer = make_optimizer(run.field, self.cfg, run.camera_opt, run.renderer)
        images = data.images
        self.n_images, self.height, self.width = images.shape[0], images.shape[1], images.shape[2]
        self.pixels = images.reshape(-1, images.shape[-1]).to(self.device)  # [N*H*W, C]
        self.cameras = data.cameras.to(self.device)
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self._use_depths(sparse_depth)
        self.n_rays = self.cfg.batch_rays
        grid = run.renderer.grid
        carved_before = not bool(grid.allowed.all())  # a re-opened run carries its hull in the checkpoint
        if images.shape[-1] == 4 and run.renderer.cfg.sampler == "occupancy" and not carved_before:
            grid.carve_from_masks(self.cameras, images[..., 3].to(self.device))
        self.hull_fraction = float(grid.allowed.float().mean())  # share of the grid inside the visual hull
        cfg = self.cfg
        loop = LoopConfig(steps=cfg.steps, minutes=cfg.minutes, log_every=cfg.log_every,
                          checkpoint_every_s=cfg.checkpoint_every_s, eval_every=eval_every if eval_fn else 0,
                          eval_at_seconds=tuple(eval_at_seconds) if eval_fn else (), grad_clip=cfg.grad_clip,
                          progress=progress, tensorboard=tensorboard)
        self.engine = Engine(self, loop, group=self.group, where=str(run.path),
                             postfix=("loss", "psnr", "rays_per_s", "samples_per_ray"))

    def _use_depths(self, sparse_depth: SparseDepth | None) -> None:
        """Train on the depth samples ``sparse_depth`` when the config weighs the sparse depth loss."""
        self.sparse_depth = sparse_depth if sparse_depth is not None and self.cfg.depth_weight > 0 else None
        if self.sparse_depth is not None:
            counts = self.sparse_depth.offsets.diff()
            self.depth_views = torch.repeat_interleave(torch.arange(len(counts)), counts)  # [M] view of each sample

    # ------------------------------------------------------------------ engine
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The task's own state (the engine adds step, time, torch RNG and the optimiser), with the depth
        samples of the sparse depth loss, so a resumed run trains on the same ones."""
        tensors = {"rng/generator": self.generator.get_state()}
        if self.sparse_depth is not None:
            tensors.update(self.sparse_depth.tensors(DEPTH_PREFIX))
        return tensors, {"n_rays": self.n_rays}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Continue from a checkpoint of :meth:`save` (called by the engine after its own state)."""
        try:
            self.generator.set_state(tensors["rng/generator"])
            self.n_rays = int(meta["n_rays"])
            if self.cfg.depth_weight > 0:
                self._use_depths(SparseDepth.from_tensors(tensors, DEPTH_PREFIX))
        except (KeyError, ValueError, RuntimeError) as exc:
            raise OmnifieldError(f"{self.run.path}: checkpoint lacks a usable training state ({exc})") from None

    def resume(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Continue the run from a checkpoint (engine state and this task's)."""
        self.engine.restore(tensors, meta, str(self.run.path))

    def write_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.run.save(meta["step"], tensors, meta)

    def save(self) -> None:
        """Checkpoint the run now (rank 0 only under torchrun)."""
        self.engine.save()

    def clip_parameters(self):
        return [*self.run.field.parameters(), *self.run.renderer.parameters()]

    def evaluate(self, step: int) -> dict[str, Any]:
        return self.eval_fn(self.run, step)

    # ------------------------------------------------------------------- step
    def _batch(self) -> tuple[torch.Tensor, ...]:
        """This rank's shard of the global batch: origins, directions, background, target, jitter, camera ids, and
        each ray's distance to the structure-from-motion point it passes through (0: none; with the sparse depth
        loss, ``depth_rays`` x the batch's rays more go through the points' pixels, targets their pixels' colours)."""
        n = self.n_rays
        per_image = self.height * self.width
        idx = torch.randint(0, self.pixels.shape[0], (n,), generator=self.generator)
        px = (idx % self.width).float() + torch.rand(n, generator=self.generator)
        py = (idx % per_image // self.width).float() + torch.rand(n, generator=self.generator)
        depth = torch.zeros(n)
        if self.sparse_depth is not None:  # rays through structure-from-motion points, their depth known
            k = max(1, int(n * self.cfg.depth_rays))
            pick = torch.randint(0, len(self.sparse_depth), (k,), generator=self.generator)
            view, uv = self.depth_views[pick], self.sparse_depth.uv[pick]
            column = uv[:, 0].long().clamp(0, self.width - 1)
            row = uv[:, 1].long().clamp(0, self.height - 1)
            idx = torch.cat([idx, view * per_image + row * self.width + column])
            px, py = torch.cat([px, uv[:, 0]]), torch.cat([py, uv[:, 1]])
            depth = torch.cat([depth, self.sparse_depth.depth[pick]])
        total = len(idx)
        bg = torch.rand(total, 3, generator=self.generator) if self.cfg.random_background else torch.ones(total, 3)
        jitter = torch.rand(self.run.renderer.jitter_shape(total), generator=self.generator)
        mine = shard(total, self.group)  # the random draws stay on the CPU generator: the same on every device
        idx, px, py, depth, bg, jitter = (t[mine].to(self.device) for t in (idx, px, py, depth, bg, jitter))
        cam = idx // per_image
        origins, dirs = self.cameras.generate_rays(cam, px, py)
        target = composite_on(self.pixels[idx], bg)
        # z-depth along the optical axis -> distance along the ray (unit directions; cameras look down -z)
        forward = -self.cameras.c2w[cam, :3, 2]
        distance = torch.where(depth > 0, depth / (dirs * forward).sum(-1).clamp_min(1e-6), depth)
        return origins, dirs, bg, target, jitter, cam, distance

    def _extra_losses(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Optional losses switched on in the config (S3IM)."""
        cfg = self.cfg
        if cfg.s3im_weight <= 0:
            return torch.zeros((), dtype=pred.dtype)
        from omnifield.losses.s3im import s3im_loss

        return cfg.s3im_weight * s3im_loss(pred, target, repeats=cfg.s3im_repeats, kernel_size=cfg.s3im_kernel,
                                           stride=cfg.s3im_stride, patch_height=cfg.s3im_patch,
                                           generator=self.generator)

    def training_step(self, step: int, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        """Render a batch and return its loss (the engine back-propagates and steps Adam) and statistics."""
        run, cfg = self.run, self.cfg
        run.field.train()
        if run.renderer.update_occupancy(run.field, step):
            broadcast_from_main([run.renderer.grid.values, run.renderer.grid.occupancy], self.group)
        if step == run.renderer.grid.cfg.warmup_steps and run.renderer.cfg.sampler == "occupancy":
            self.place_bases_on_density()
        factor = lr_factor(progress, step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = group.get("base_lr", cfg.lr) * factor  # runs saved before base_lr: one rate
        origins, dirs, bg, target, jitter, cam, distance = self._batch()
        rgb, n_samples, pose_penalty, distortion, interlevel, depth_error = self.rendering(
            origins, dirs, bg, jitter, cam, distance)
        mse = torch.nn.functional.mse_loss(rgb, target)
        loss = mse + self._extra_losses(rgb, target)
        if cfg.distortion_weight > 0:  # runs saved before the option carry -1, i.e. off
            loss = loss + cfg.distortion_weight * distortion
        if cfg.camera_opt_l2 > 0:
            loss = loss + cfg.camera_opt_l2 * pose_penalty
        if run.renderer.cfg.sampler == "proposal":
            loss = loss + cfg.interlevel_weight * interlevel
        if self.sparse_depth is not None:
            loss = loss + cfg.depth_weight * depth_error
        # a single all-reduce for the batch's samples, squared error and loss (the clock has its own)
        n_samples, sq_err, loss_sum, n_rays = sum_over_ranks(
            [float(n_samples), float(mse.detach()) * rgb.numel(), float(loss.detach()), float(rgb.shape[0])],
            self.group)
        mse = sq_err / (3 * n_rays)
        n_rays = int(n_rays)  # the batch's rays, those through structure-from-motion points included
        if cfg.target_samples > 0 and n_samples > 0:
            want = self.n_rays * cfg.target_samples / n_samples
            self.n_rays = int(min(max(want, 256), cfg.max_batch_rays))
        stats = {
            "loss": loss_sum / self.group.world_size,
            "psnr": psnr_from_mse(mse),
            "rays": n_rays,
            "samples_per_ray": n_samples / max(n_rays, 1),
            "lr": cfg.lr * factor,
        }
        if self.sparse_depth is not None:  # this rank's mean, in the ray coordinate (0 = near, 1 = far)
            stats["depth_error"] = float(depth_error.detach())
        return loss, stats

    @torch.no_grad()
    def place_bases_on_density(self, max_points: int = 1 << 16) -> bool:
        """Encodings with movable bases (NeuRBF's ``init_centers``) are placed by weighted k-means on
        the coarse density of the occupancy grid (its occupied cells weighted by their EMA density), as
        NeuRBF initialises radiance fields. Runs once, when the grid's warm-up ends; returns whether it did."""
        init = getattr(getattr(self.run.field, "encoding", None), "init_centers", None)
        if init is None:
            return False
        grid = self.run.renderer.grid
        cells = torch.nonzero(grid.occupancy.reshape(-1)).squeeze(-1)
        n_bases = self.run.field.encoding.cfg.n_bases
        if cells.numel() < n_bases:  # too few occupied cells to hold every basis: the hull instead
            cells = torch.nonzero(grid.allowed.reshape(-1)).squeeze(-1)
        if cells.numel() < n_bases:
            return False
        if cells.numel() > max_points:  # a seeded subset keeps k-means to a second or two
            pick = torch.randperm(cells.numel(), generator=torch.Generator().manual_seed(self.cfg.seed))[:max_points]
            cells = cells[pick.to(cells.device)]
        points = (grid.cell_ijk[cells].float() + 0.5) / grid.cfg.resolution  # the field's unit cube = the grid's box
        init(points, grid.values[cells] + 1e-6)
        return True

    def fit(self, log_path: Path | None = None) -> list[dict[str, Any]]:
        """Train until ``steps`` or the time budget; checkpoints periodically, at the end and on Ctrl-C.
        Returns the evaluation history."""
        if self.group.is_main:
            remove_stale_temporaries(self.run.path / CHECKPOINT)
        self.engine.log_path = log_path
        return self.engine.run()
