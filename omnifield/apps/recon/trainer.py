"""``Trainer``: fits any radiance field to posed images through the volume renderer.

Per step: random rays over all training pixels (a seeded generator), random background
colours composited into RGBA targets, occupancy-grid refresh, render, MSE, Adam. Real captures
add per-image pose corrections (applied to the batch's rays) and per-image appearance codes. The number
of rays adapts so that each step carries about ``target_samples`` samples (as nerfacc).
Checkpoints (weights, occupancy grid, optimiser state, step, RNG) are written atomically every
``checkpoint_every_s`` seconds, at the end, and on Ctrl-C; ``resume`` continues a run exactly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm import tqdm

from omnifield.apps.recon.config import TrainConfig
from omnifield.apps.recon.run import CHECKPOINT, Run
from omnifield.data.blender import PosedImages
from omnifield.data.images import composite_on
from omnifield.distributed import broadcast_from_main, current, shard, sum_over_ranks
from omnifield.errors import OmnifieldError
from omnifield.io.checkpoint import load_optimizer_state, optimizer_state, remove_stale_temporaries
from omnifield.metrics import psnr_from_mse


def lr_factor(progress: float, step: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup_steps``, then step decay at 50/75/90 %."""
    warm = min(1.0, 0.01 + 0.99 * step / max(cfg.warmup_steps, 1))
    decays = sum(progress >= m for m in (0.5, 0.75, 0.9))
    return warm * cfg.decay_gamma**decays


def make_optimizer(field: torch.nn.Module, cfg: TrainConfig,
                   camera_opt: nn.Module | None = None) -> torch.optim.Optimizer:
    """Fused Adam: weight decay on decoder weight matrices only (never on grids/tables of features,
    CAM's modulation grids inside a decoder included). Pose corrections get their own group: peak
    learning rate ``cfg.camera_opt_lr``, no weight decay. Each group keeps its peak rate as ``base_lr``."""
    decay, no_decay = [], []
    for name, p in field.named_parameters():
        weight_matrix = "decoder" in name and p.dim() == 2
        (decay if weight_matrix else no_decay).append(p)
    groups = [{"params": no_decay, "weight_decay": 0.0, "base_lr": cfg.lr},
              {"params": decay, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr}]
    if camera_opt is not None:
        groups.append({"params": list(camera_opt.parameters()), "weight_decay": 0.0, "lr": cfg.camera_opt_lr,
                       "base_lr": cfg.camera_opt_lr})
    # the fused kernel is ~8x faster than the default on CPU (12M hash-table entries: 7 ms vs 53 ms per step)
    return torch.optim.Adam([g for g in groups if g["params"]], lr=cfg.lr, eps=cfg.eps, fused=True)


class _RayRendering(nn.Module):
    """``(origins, directions, background, jitter, camera_ids) -> (rgb [R, 3], n_samples, pose penalty [])``:
    the one forward that ``DistributedDataParallel`` wraps, so gradients of the field, the appearance
    codes and the pose corrections are averaged across ranks. Rays are moved to the refined poses and
    each ray gets its image's appearance code here."""

    def __init__(self, field: nn.Module, renderer: nn.Module, camera_opt: nn.Module | None):
        super().__init__()
        self.field, self.renderer, self.camera_opt = field, renderer, camera_opt

    def forward(self, origins, directions, background, jitter, camera_ids):
        penalty = origins.new_zeros(())
        if self.camera_opt is not None:
            origins, directions = self.camera_opt.apply(camera_ids, origins, directions)
            penalty = self.camera_opt.penalty()
        appearance = getattr(self.field, "appearance", None)
        codes = None if appearance is None else appearance(camera_ids)
        out = self.renderer.render_rays(self.field, origins, directions, background, stratified=True, jitter=jitter,
                                        appearance=codes)
        return out.rgb, out.n_samples, penalty


class Trainer:
    """Trains ``run.field`` on ``data``.

    ``eval_fn(run, step) -> dict`` runs every ``eval_every`` steps and whenever the training time
    passes one of ``eval_at_seconds`` (evaluation time is not counted as training time).

    Under torchrun (see :mod:`omnifield.distributed`) every rank draws the same global batch and
    renders its shard; DDP averages the gradients, the occupancy grid follows rank 0, the ray
    count and the stopping time are agreed across ranks, and rank 0 alone writes checkpoints.
    """

    def __init__(self, run: Run, data: PosedImages, eval_fn: Callable[[Run, int], dict] | None = None,
                 eval_every: int = 0, eval_at_seconds: tuple[float, ...] = (), progress: bool = True):
        self.run, self.cfg = run, run.train_config
        self.eval_fn, self.eval_every, self.progress = eval_fn, eval_every, progress
        self.eval_at_seconds = sorted(eval_at_seconds)
        self.group = current()
        self.rendering = _RayRendering(run.field, run.renderer, run.camera_opt)
        self.device = run.device
        if self.group.active:  # buffers: the occupancy grid is broadcast after each update instead
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.rendering = nn.parallel.DistributedDataParallel(self.rendering, device_ids=ids, broadcast_buffers=False,
                                                                 find_unused_parameters=True)
        self.optimizer = make_optimizer(run.field, self.cfg, run.camera_opt)
        images = data.images
        self.n_images, self.height, self.width = images.shape[0], images.shape[1], images.shape[2]
        self.pixels = images.reshape(-1, images.shape[-1]).to(self.device)  # [N*H*W, C]
        self.cameras = data.cameras.to(self.device)
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self.step = 0
        self.elapsed = 0.0
        self.n_rays = self.cfg.batch_rays
        self.history: list[dict[str, Any]] = []
        grid = run.renderer.grid
        carved_before = not bool(grid.allowed.all())  # a re-opened run carries its hull in the checkpoint
        if images.shape[-1] == 4 and run.renderer.cfg.sampler == "occupancy" and not carved_before:
            grid.carve_from_masks(self.cameras, images[..., 3].to(self.device))
        self.hull_fraction = float(grid.allowed.float().mean())  # share of the grid inside the visual hull

    # ------------------------------------------------------------------ state
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, optim_meta = optimizer_state(self.optimizer)
        tensors["rng/generator"] = self.generator.get_state()
        tensors["rng/torch"] = torch.get_rng_state()
        meta = {"elapsed": self.elapsed, "n_rays": self.n_rays, "optimizer": optim_meta}
        return tensors, meta

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        try:
            load_optimizer_state(self.optimizer, tensors, meta["optimizer"])
            self.generator.set_state(tensors["rng/generator"])
            torch.set_rng_state(tensors["rng/torch"])
            self.step, self.elapsed, self.n_rays = int(meta["step"]), float(meta["elapsed"]), int(meta["n_rays"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise OmnifieldError(f"{self.run.path}: checkpoint lacks a usable training state ({exc})") from None

    def save(self) -> None:
        """Checkpoint the run (rank 0 only under torchrun)."""
        if self.group.is_main:
            tensors, meta = self.state()
            self.run.save(self.step, tensors, meta)

    # ------------------------------------------------------------------- loop
    def _batch(self) -> tuple[torch.Tensor, ...]:
        """This rank's shard of the global batch: origins, directions, background, target, jitter, camera ids."""
        n = self.n_rays
        idx = torch.randint(0, self.pixels.shape[0], (n,), generator=self.generator)
        px_offset = torch.rand(n, generator=self.generator)
        py_offset = torch.rand(n, generator=self.generator)
        bg = torch.rand(n, 3, generator=self.generator) if self.cfg.random_background else torch.ones(n, 3)
        jitter = torch.rand(self.run.renderer.jitter_shape(n), generator=self.generator)
        mine = shard(n, self.group)  # the random draws stay on the CPU generator: the same on every device
        idx, px_offset, py_offset, bg, jitter = (t[mine].to(self.device) for t in (idx, px_offset, py_offset, bg, jitter))
        per_image = self.height * self.width
        cam = idx // per_image
        pix = idx % per_image
        px = (pix % self.width).float() + px_offset
        py = (pix // self.width).float() + py_offset
        origins, dirs = self.cameras.generate_rays(cam, px, py)
        target = composite_on(self.pixels[idx], bg)
        return origins, dirs, bg, target, jitter, cam

    def _extra_losses(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Optional losses switched on in the config (S3IM)."""
        cfg = self.cfg
        if cfg.s3im_weight <= 0:
            return torch.zeros((), dtype=pred.dtype)
        from omnifield.losses.s3im import s3im_loss

        return cfg.s3im_weight * s3im_loss(pred, target, repeats=cfg.s3im_repeats, kernel_size=cfg.s3im_kernel,
                                           stride=cfg.s3im_stride, patch_height=cfg.s3im_patch,
                                           generator=self.generator)

    def train_step(self, progress_fraction: float) -> dict[str, float]:
        """One optimisation step; returns loss, PSNR and sample statistics."""
        run, cfg = self.run, self.cfg
        run.field.train()
        if run.renderer.update_occupancy(run.field, self.step):
            broadcast_from_main([run.renderer.grid.values, run.renderer.grid.occupancy], self.group)
        if self.step == run.renderer.grid.cfg.warmup_steps and run.renderer.cfg.sampler == "occupancy":
            self.place_bases_on_density()
        factor = lr_factor(progress_fraction, self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = group.get("base_lr", cfg.lr) * factor  # runs saved before base_lr: one rate
        origins, dirs, bg, target, jitter, cam = self._batch()
        rgb, n_samples, pose_penalty = self.rendering(origins, dirs, bg, jitter, cam)
        mse = torch.nn.functional.mse_loss(rgb, target)
        loss = mse + self._extra_losses(rgb, target)
        if cfg.camera_opt_l2 > 0:
            loss = loss + cfg.camera_opt_l2 * pose_penalty
        # a single all-reduce for the batch's samples, squared error and divergence (the clock has its own)
        n_samples, sq_err, bad = sum_over_ranks(
            [float(n_samples), float(mse.detach()) * rgb.numel(), float(not torch.isfinite(loss))], self.group)
        mse = sq_err / (3 * self.n_rays)
        if bad:
            raise OmnifieldError(
                f"training diverged at step {self.step} (loss is {float(loss.detach())}); the last good checkpoint in "
                f"{run.path} is kept — lower the learning rate (--lr) or enable --grad-clip"
            )
        self.optimizer.zero_grad(set_to_none=True)
        if not loss.requires_grad:  # no ray kept a sample (all skipped as empty): nothing to learn this step
            loss = loss + sum(p.sum() for p in run.field.parameters()) * 0.0
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.field.parameters(), cfg.grad_clip)
        self.optimizer.step()
        n_rays = self.n_rays
        if cfg.target_samples > 0 and n_samples > 0:
            want = n_rays * cfg.target_samples / n_samples
            self.n_rays = int(min(max(want, 256), cfg.max_batch_rays))
        return {
            "loss": float(loss.detach()),
            "psnr": psnr_from_mse(mse),
            "rays": n_rays,
            "samples_per_ray": n_samples / max(n_rays, 1),
            "lr": cfg.lr * factor,
        }

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

    def _eval_due(self) -> bool:
        if self.eval_fn is None:
            return False
        due = bool(self.eval_every) and self.step % self.eval_every == 0
        while self.eval_at_seconds and self.elapsed >= self.eval_at_seconds[0]:
            self.eval_at_seconds.pop(0)
            due = True
        return due

    def fit(self, log_path: Path | None = None) -> list[dict[str, Any]]:
        """Train until ``steps`` or the time budget; checkpoints periodically and on Ctrl-C."""
        cfg = self.cfg
        budget = cfg.minutes * 60.0
        remove_stale_temporaries(self.run.path / CHECKPOINT)
        last_ckpt = time.perf_counter()
        timed = budget > 0  # with a time budget the bar counts training seconds, so its ETA is right
        bar = tqdm(total=budget if timed else cfg.steps, initial=self.elapsed if timed else self.step,
                   disable=not (self.progress and self.group.is_main), unit="s" if timed else "step", dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s [{elapsed}<{remaining}{postfix}]" if timed else None)
        log = open(log_path, "a") if log_path and self.group.is_main else None
        rays_seen, t_window, first = 0, time.perf_counter(), True
        try:
            while self.step < cfg.steps and (budget <= 0 or self.elapsed < budget):
                t0 = time.perf_counter()
                progress = max(self.step / cfg.steps, self.elapsed / budget if budget > 0 else 0.0)
                stats = self.train_step(progress)
                # the first step of a process compiles native kernels (tens of seconds on a fresh install):
                # it does not count against the time budget
                dt = 0.0 if first else time.perf_counter() - t0
                first = False
                if self.group.active:  # every rank must see the same clock to stop at the same step
                    dt = sum_over_ranks([self.elapsed + dt], self.group)[0] / self.group.world_size - self.elapsed
                self.elapsed += dt
                self.step += 1
                rays_seen += stats["rays"]
                bar.update(min(dt, budget - bar.n) if timed else 1)
                if self.step % cfg.log_every == 0 or self.step == 1:
                    now = time.perf_counter()
                    stats.update(step=self.step, elapsed=round(self.elapsed, 2),
                                 rays_per_s=rays_seen / max(now - t_window, 1e-9))
                    rays_seen, t_window = 0, now
                    bar.set_postfix(loss=f"{stats['loss']:.4f}", psnr=f"{stats['psnr']:.2f}",
                                    rays_s=f"{stats['rays_per_s']:.0f}", spr=f"{stats['samples_per_ray']:.1f}")
                    if log:
                        log.write(json.dumps(stats) + "\n")
                        log.flush()
                if self._eval_due():
                    record = {"step": self.step, "elapsed": self.elapsed, **self.eval_fn(self.run, self.step)}
                    self.history.append(record)
                    bar.write(f"step {self.step} ({self.elapsed:.0f}s): " +
                              ", ".join(f"{k} {v:.3f}" for k, v in record.items() if isinstance(v, float)))
                if time.perf_counter() - last_ckpt > cfg.checkpoint_every_s:
                    self.save()
                    last_ckpt = time.perf_counter()
        except KeyboardInterrupt:
            self.save()
            if self.group.is_main:
                bar.write(f"interrupted: checkpoint at step {self.step} saved in {self.run.path}")
            raise
        finally:
            bar.close()
            if log:
                log.close()
        self.save()
        return self.history
