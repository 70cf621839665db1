"""Pre-training, fine-tuning and evaluation loops for the grid MAE and the voxel segmenter.

Both loops are one task of the training engine (:mod:`omnifield.engine`), :class:`GridTraining`:
seeded batches drawn epoch by epoch (one generator drives batches, masks and flips), AdamW with
linear warm-up then cosine decay, and random x/y flips and x<->y swaps (z stays up). The engine
gives them the budget (steps and/or minutes), the progress bar, ``log.jsonl``, periodic
checkpoints, Ctrl-C and resume. With a ``folder``, the checkpoint is ``folder/training.safetensors``
(model weights, optimiser, generator, the epoch's remaining order and the per-step history).

Example::

    history = pretrain_mae(mae, rgba, PretrainConfig(batch_size=8, lr=1e-3), LoopConfig(steps=500))
    psnr = evaluate_reconstruction(mae, held_out, seed=1)["psnr_rgb"]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from omnifield.apps.mae.model import MAE3D, VoxelSegmenter, masked_reconstruction_loss, patchify
from omnifield.apps.mae.runs import TRAINING_FILE, model_info
from omnifield.config import register_config
from omnifield.engine import Engine, LoopConfig
from omnifield.errors import OmnifieldError
from omnifield.io.checkpoint import (
    load_checkpoint,
    load_module_state,
    module_state,
    remove_stale_temporaries,
    save_checkpoint,
)
from omnifield.metrics import psnr_from_mse

WEIGHT_DECAY = 0.05
WARMUP_FRACTION = 0.05  # of the run: steps // 20 steps for a step budget


@register_config("mae_pretrain")
@dataclass
class PretrainConfig:
    """Masked pre-training: ``batch_size`` grids per step, peak AdamW learning rate ``lr``, ``seed``."""

    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0


@register_config("mae_finetune")
@dataclass
class FinetuneConfig:
    """Voxel-labelling fine-tuning: as :class:`PretrainConfig`; the encoder learns at ``lr * encoder_lr_scale``
    (0 freezes it)."""

    batch_size: int = 4
    lr: float = 2e-3
    seed: int = 0
    encoder_lr_scale: float = 1.0


def check_config(cfg: PretrainConfig | FinetuneConfig) -> None:
    """Refuse settings that cannot train (one line, named as the CLI options)."""
    if cfg.batch_size < 1:
        raise OmnifieldError(f"--batch must be >= 1, got {cfg.batch_size}")
    if not cfg.lr > 0:
        raise OmnifieldError(f"--lr must be > 0, got {cfg.lr}")
    if not getattr(cfg, "encoder_lr_scale", 0.0) >= 0:
        raise OmnifieldError(f"--encoder-lr-scale must be >= 0, got {cfg.encoder_lr_scale}")


def augment(rgba: torch.Tensor, labels: torch.Tensor | None, generator: torch.Generator):
    """Same random flip of x, of y, and x<->y swap for a batch ``rgba [B, 4, X, Y, Z]`` (+ ``labels [B, X, Y, Z]``)."""
    flip_x, flip_y, swap = (torch.rand(3, generator=generator) < 0.5).tolist()
    if rgba.shape[2] != rgba.shape[3]:
        swap = False

    def apply(t: torch.Tensor, first: int) -> torch.Tensor:
        dims = [first + i for i, f in enumerate((flip_x, flip_y)) if f]
        t = t.flip(dims) if dims else t
        return t.transpose(first, first + 1) if swap else t

    return apply(rgba, 2), None if labels is None else apply(labels, 1)


def lr_factor(step: int, progress: float, steps: int) -> float:
    """Learning-rate multiplier: linear warm-up over the first ``steps // 20`` steps (over the first 5 %
    of the run for a time budget, ``steps`` 0), then cosine decay to 0 at the end (``progress`` 1)."""
    warm_steps = max(1, steps // 20)
    if steps > 0 and step < warm_steps:
        return (step + 1) / warm_steps
    warm = warm_steps / steps if steps > 0 else WARMUP_FRACTION
    if progress < warm:
        return max(progress / warm, 0.01)
    return 0.5 * (1 + math.cos(math.pi * (progress - warm) / max(1.0 - warm, 1.0 / max(steps, 1))))


class EpochBatches:
    """Index batches ``[batch_size]`` drawn epoch by epoch from seeded permutations of ``n`` items;
    ``order`` holds what is left of the current epoch (part of the training state)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.order = torch.empty(0, dtype=torch.int64)

    def next(self) -> torch.Tensor:
        if self.order.numel() < self.batch_size:
            self.order = torch.cat([self.order, torch.randperm(self.n, generator=self.generator)])
        idx, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return idx


class GridTraining:
    """The engine task of both loops: ``loss_of_batch(idx [B], generator) -> {"loss": tensor, ...}`` on
    batches of ``n`` grids, AdamW over ``groups`` (peak rates ``base_lr``) with :func:`lr_factor`.

    ``history`` holds every step's ``{"step", "loss", ...}`` (0-based steps). ``folder`` (optional) is
    where checkpoints go; ``info`` is added to their metadata.
    """

    def __init__(self, model: MAE3D | VoxelSegmenter, loss_of_batch: Callable, n: int,
                 cfg: PretrainConfig | FinetuneConfig, groups: list[dict], folder: Path | None = None,
                 info: dict[str, Any] | None = None):
        check_config(cfg)
        self.model, self.loss_of_batch, self.cfg = model, loss_of_batch, cfg
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.batches = EpochBatches(n, cfg.batch_size, self.generator)
        for group in groups:
            group["base_lr"] = group.get("lr", cfg.lr)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=WEIGHT_DECAY)
        self.folder, self.info = folder, dict(info or {})
        self.history: list[dict[str, float]] = []
        self.budget_steps = 0  # the engine's step budget (set by train_grids), for the warm-up length

    def training_step(self, step: int, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        factor = lr_factor(step, progress, self.budget_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        self.model.train()
        terms = self.loss_of_batch(self.batches.next(), self.generator)
        record = {k: float(v.detach()) for k, v in terms.items()}
        self.history.append({"step": step, **record})
        return terms["loss"], {**record, "lr": self.cfg.lr * factor}

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {**module_state("model", self.model), "rng/batches": self.generator.get_state(),
                   "batches/order": self.batches.order}
        return tensors, {"history": self.history}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        where = str(self.folder / TRAINING_FILE) if self.folder else "checkpoint"
        try:
            load_module_state("model", self.model, tensors, where)
            self.generator.set_state(tensors["rng/batches"])
            self.batches.order = tensors["batches/order"].to(torch.int64)
            self.history = [dict(h) for h in meta["history"]]
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise OmnifieldError(f"{where}: checkpoint lacks a usable training state ({exc})") from None

    def write_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if self.folder is not None:
            save_checkpoint(self.folder / TRAINING_FILE, tensors, {**model_info(self.model), **self.info, **meta})


def train_grids(task: GridTraining, loop: LoopConfig, resume: bool = False, description: str = "mae") -> list[dict]:
    """Run ``task`` under ``loop`` (with ``resume``, continue ``task.folder``'s checkpoint); returns the
    per-step history. A fresh run into a folder starts its ``log.jsonl`` anew."""
    folder = task.folder
    task.budget_steps = loop.steps
    engine = Engine(task, loop, log_path=None if folder is None else folder / "log.jsonl", description=description,
                    postfix=("loss", "lr"), where=str(folder or ""))
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder / TRAINING_FILE)
        if resume:
            path = folder / TRAINING_FILE
            if not path.is_file():
                raise OmnifieldError(f"{folder}: --resume needs a training checkpoint ({TRAINING_FILE}), found none")
            tensors, meta = load_checkpoint(path)
            engine.restore(tensors, meta, str(path))
        else:
            (folder / "log.jsonl").unlink(missing_ok=True)
    elif resume:
        raise OmnifieldError("resume needs the folder of the run")
    try:
        engine.run()
    finally:
        task.model.eval()
    return task.history


def pretrain_mae(model: MAE3D, rgba: torch.Tensor, cfg: PretrainConfig, loop: LoopConfig, folder: Path | None = None,
                 info: dict[str, Any] | None = None, resume: bool = False) -> list[dict]:
    """Masked-reconstruction pre-training on grids ``rgba [N, 4, X, Y, Z]``; returns per-step
    ``{"step", "loss", "rgb", "alpha"}``. ``folder``/``info``/``resume``: see :class:`GridTraining`."""
    torch.manual_seed(cfg.seed)

    def loss_of_batch(idx, generator):
        batch, _ = augment(rgba[idx], None, generator)
        pred, mask = model(batch, generator)
        return masked_reconstruction_loss(pred, patchify(batch, model.cfg.patch), mask, model.cfg.occupied_alpha)

    task = GridTraining(model, loss_of_batch, rgba.shape[0], cfg, [{"params": list(model.parameters())}], folder, info)
    return train_grids(task, loop, resume, "mae pretrain")


@torch.no_grad()
def evaluate_reconstruction(model: MAE3D, rgba: torch.Tensor, seed: int = 1, batch_size: int = 8) -> dict:
    """Masked reconstruction of held-out grids ``[N, 4, X, Y, Z]``: PSNR of RGB on occupied hidden voxels,
    PSNR of alpha on hidden voxels, and the loss (means over all grids)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    sums = {"rgb": 0.0, "alpha": 0.0, "loss": 0.0}
    for start in range(0, rgba.shape[0], batch_size):
        batch = rgba[start : start + batch_size]
        pred, mask = model(batch, generator)
        terms = masked_reconstruction_loss(pred, patchify(batch, model.cfg.patch), mask, model.cfg.occupied_alpha)
        for key in sums:
            sums[key] += float(terms[key]) * batch.shape[0]
    means = {k: v / rgba.shape[0] for k, v in sums.items()}
    return {
        "psnr_rgb": psnr_from_mse(means["rgb"]),
        "psnr_alpha": psnr_from_mse(means["alpha"]),
        "loss": means["loss"],
    }


def class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse-square-root-frequency weights ``[n_classes]`` (mean 1 over present classes) for cross-entropy."""
    counts = torch.bincount(labels.flatten(), minlength=n_classes).float()
    weights = torch.where(counts > 0, counts.clamp_min(1).rsqrt(), torch.zeros_like(counts))
    return weights / weights[counts > 0].mean()


def finetune_segmenter(model: VoxelSegmenter, rgba: torch.Tensor, labels: torch.Tensor, cfg: FinetuneConfig,
                       loop: LoopConfig, folder: Path | None = None, info: dict[str, Any] | None = None,
                       resume: bool = False) -> list[dict]:
    """Train on grids ``rgba [N, 4, X, Y, Z]`` labelled ``labels [N, X, Y, Z]`` (int64 classes) with
    class-weighted voxel cross-entropy; returns per-step ``{"step", "loss"}``.

    The encoder learns at ``cfg.lr * cfg.encoder_lr_scale`` (0 freezes it: a linear-probe-like setting),
    the head at ``cfg.lr``. ``folder``/``info``/``resume``: see :class:`GridTraining`.
    """
    check_config(cfg)
    torch.manual_seed(cfg.seed)
    weights = class_weights(labels, model.n_classes)
    encoder = list(model.encoder.parameters())
    head = [p for name, p in model.named_parameters() if not name.startswith("encoder.")]
    groups = [{"params": head, "lr": cfg.lr}]
    for p in encoder:
        p.requires_grad_(cfg.encoder_lr_scale > 0)
    if cfg.encoder_lr_scale > 0:
        groups.append({"params": encoder, "lr": cfg.lr * cfg.encoder_lr_scale})

    def loss_of_batch(idx, generator):
        batch, target = augment(rgba[idx], labels[idx], generator)
        return {"loss": F.cross_entropy(model(batch), target, weight=weights)}

    task = GridTraining(model, loss_of_batch, rgba.shape[0], cfg, groups, folder, info)
    return train_grids(task, loop, resume, "finetune")


@torch.no_grad()
def predict_labels(model: VoxelSegmenter, rgba: torch.Tensor, batch_size: int = 4) -> torch.Tensor:
    """Predicted classes ``[N, X, Y, Z]`` of grids ``[N, 4, X, Y, Z]``."""
    model.eval()
    return torch.cat([model(rgba[i : i + batch_size]).argmax(1) for i in range(0, rgba.shape[0], batch_size)])


def segmentation_scores(pred: torch.Tensor, target: torch.Tensor, n_classes: int) -> dict:
    """IoU per class, mIoU over the foreground classes (1..n-1) present in ``target``, and accuracy on
    voxels whose target is foreground."""
    confusion = torch.bincount(target.flatten() * n_classes + pred.flatten(), minlength=n_classes**2)
    confusion = confusion.reshape(n_classes, n_classes).double()
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
    present = confusion.sum(1) > 0
    present[0] = False
    fg = target > 0
    return {
        "miou": float(iou[present].mean()) if bool(present.any()) else float("nan"),
        "iou": [float(v) for v in iou],
        "fg_accuracy": float((pred[fg] == target[fg]).double().mean()) if bool(fg.any()) else float("nan"),
    }
