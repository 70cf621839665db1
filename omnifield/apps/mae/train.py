"""Pre-training, fine-tuning and evaluation loops for the grid MAE and the voxel segmenter.

All loops are seeded (``seed`` drives batches, masks and flips), show a tqdm
progress bar, use AdamW with linear warm-up then cosine decay, and augment with
random x/y flips and x<->y swaps (z stays up).

Example::

    history = pretrain_mae(mae, rgba, steps=500, batch_size=8, lr=1e-3, seed=0)
    psnr = evaluate_reconstruction(mae, held_out, seed=1)["psnr_rgb"]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm import tqdm

from omnifield.apps.mae.model import MAE3D, VoxelSegmenter, masked_reconstruction_loss, patchify
from omnifield.errors import OmnifieldError
from omnifield.metrics import psnr_from_mse


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


def _schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warm = max(1, steps // 20)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """``steps`` index batches drawn epoch by epoch from a seeded permutation of ``n`` items."""
    order = torch.empty(0, dtype=torch.int64)
    for _ in range(steps):
        if order.numel() < batch_size:
            order = torch.cat([order, torch.randperm(n, generator=generator)])
        yield order[:batch_size]
        order = order[batch_size:]


def _fit(model, loss_of_batch, n: int, steps: int, batch_size: int, lr: float, seed: int, desc: str, progress: bool,
         groups: list[dict] | None = None):
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(groups or model.parameters(), lr=lr, weight_decay=0.05)
    scheduler = _schedule(optimizer, steps)
    history = []
    model.train()
    bar = tqdm(_batches(n, batch_size, steps, generator), total=steps, desc=desc, disable=not progress)
    for step, idx in enumerate(bar):
        terms = loss_of_batch(idx, generator)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        scheduler.step()
        record = {"step": step, **{k: float(v.detach()) for k, v in terms.items()}}
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}")
    model.eval()
    return history


def pretrain_mae(
    model: MAE3D,
    rgba: torch.Tensor,  # [N, 4, X, Y, Z] training grids
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Masked-reconstruction pre-training; returns per-step ``{"step", "loss", "rgb", "alpha"}``."""
    torch.manual_seed(seed)

    def loss_of_batch(idx, generator):
        batch, _ = augment(rgba[idx], None, generator)
        pred, mask = model(batch, generator)
        return masked_reconstruction_loss(pred, patchify(batch, model.cfg.patch), mask, model.cfg.occupied_alpha)

    return _fit(model, loss_of_batch, rgba.shape[0], steps, batch_size, lr, seed, "mae pretrain", progress)


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


def finetune_segmenter(
    model: VoxelSegmenter,
    rgba: torch.Tensor,  # [N, 4, X, Y, Z] labelled grids
    labels: torch.Tensor,  # [N, X, Y, Z] int64 classes
    steps: int,
    batch_size: int = 4,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    encoder_lr_scale: float = 1.0,
) -> list[dict]:
    """Train with class-weighted voxel cross-entropy; returns per-step ``{"step", "loss"}``.

    The encoder learns at ``lr * encoder_lr_scale`` (0 freezes it: a linear-probe-like setting), the
    head at ``lr``.
    """
    if encoder_lr_scale < 0:
        raise OmnifieldError(f"--encoder-lr-scale must be >= 0, got {encoder_lr_scale}")
    torch.manual_seed(seed)
    weights = class_weights(labels, model.n_classes)
    encoder = list(model.encoder.parameters())
    head = [p for name, p in model.named_parameters() if not name.startswith("encoder.")]
    groups = [{"params": head, "lr": lr}]
    for p in encoder:
        p.requires_grad_(encoder_lr_scale > 0)
    if encoder_lr_scale > 0:
        groups.append({"params": encoder, "lr": lr * encoder_lr_scale})

    def loss_of_batch(idx, generator):
        batch, target = augment(rgba[idx], labels[idx], generator)
        return {"loss": F.cross_entropy(model(batch), target, weight=weights)}

    return _fit(model, loss_of_batch, rgba.shape[0], steps, batch_size, lr, seed, "finetune", progress, groups)


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
