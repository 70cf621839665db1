"""Adaptive density control with the semantics of gsplat's ``DefaultStrategy`` (3DGS, Kerbl et al. 2023).

After each backward pass (until ``refine_stop_iter``) the screen-space gradient norm of every
visible Gaussian is accumulated, with gsplat's normalisation ``grad * (W/2, H/2)``. Every
``refine_every`` steps after ``refine_start_iter``:

- grow: Gaussians whose mean gradient exceeds ``grow_grad2d`` are *duplicated* when small
  (``max scale <= grow_scale3d * scene_scale``) and *split* in two otherwise (children sampled from
  the parent's Gaussian, scales / 1.6);
- prune: opacity ``< prune_opa``, and after the first opacity reset also world scale
  ``> prune_scale3d * scene_scale``; with ``unseen_after = V`` (not in gsplat; the trainer sets it to its
  number of views, which it cycles through) also every Gaussian that no training view drew in the last ``V``
  steps: it gets no gradient, and only shows, as a floater no photo corrects, in views between the photos
  (one such Gaussian, beside a training camera, cost a held-out view of a 25-photo capture 7 dB);
- every ``reset_every`` steps opacities are clamped to ``2 * prune_opa``.

After ``refine_stop_iter``, scenes with volume masks (Compact-3DGS) still drop their masked
Gaussians every ``mask_prune_every`` steps, as the paper does to the end of training.

New Gaussians get zero Adam moments. ``max_gaussians`` (not in gsplat) caps growth for CPU budgets:
when the candidates would exceed it, those with the largest gradients are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from omnifield.config import register_config
from omnifield.fields.gaussians import quat_to_rotmat


@register_config("splat_density_control")
@dataclass
class DensityControlConfig:
    """gsplat ``DefaultStrategy`` defaults (``max_gaussians = 0`` means no cap)."""

    prune_opa: float = 0.005
    grow_grad2d: float = 0.0002
    grow_scale3d: float = 0.01
    prune_scale3d: float = 0.1
    refine_start_iter: int = 500
    refine_stop_iter: int = 15_000
    reset_every: int = 3000
    refine_every: int = 100
    max_gaussians: int = 0
    mask_prune_every: int = 1000
    unseen_after: int = 0


def replace_gaussians(scene: nn.Module, optimizer: torch.optim.Optimizer, select: torch.Tensor | None,
                      extra: dict[str, torch.Tensor] | None) -> None:
    """Keep Gaussians ``select [N] bool`` (all if None) and append ``extra`` rows (name -> ``[M, ...]``).

    Every per-Gaussian parameter of ``scene`` (``scene.gaussian_parameter_names()``) is replaced, and
    its Adam moments are sliced the same way, zeros for appended rows.
    """
    by_param = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    for name in scene.gaussian_parameter_names():
        old = getattr(scene, name)
        kept = old.data if select is None else old.data[select]
        rows = [kept] + ([extra[name]] if extra else [])
        new = nn.Parameter(torch.cat(rows, dim=0))
        state = optimizer.state.pop(old, None)
        group = by_param.get(id(old))
        if group is not None:
            group["params"] = [new if p is old else p for p in group["params"]]
            if state:
                for key, value in state.items():
                    if torch.is_tensor(value) and value.shape == old.shape:
                        kv = value if select is None else value[select]
                        pad = [torch.zeros_like(extra[name])] if extra else []
                        state[key] = torch.cat([kv] + pad, dim=0)
                optimizer.state[new] = state
        setattr(scene, name, new)


class DensityControl:
    """Accumulates screen-space gradients and clones / splits / prunes / resets the scene."""

    def __init__(self, cfg: DensityControlConfig, scene_scale: float):
        self.cfg = cfg
        self.scene_scale = scene_scale
        self.grad2d: torch.Tensor | None = None
        self.count: torch.Tensor | None = None
        self.last_seen: torch.Tensor | None = None  # [N] the last step at which a training view drew each Gaussian

    def step_post_backward(self, scene, optimizer: torch.optim.Optimizer, info: dict, step: int) -> dict[str, int]:
        """Call after ``loss.backward()`` with the renderer's output ``info`` (means2d, radii, width, height)."""
        cfg = self.cfg
        if step >= cfg.refine_stop_iter:
            if hasattr(scene, "prune_mask") and step % cfg.mask_prune_every == 0:
                masked = scene.prune_mask()
                if bool(masked.any()):
                    replace_gaussians(scene, optimizer, ~masked, None)
                    self.last_seen = None  # only density control reads it
                return {"pruned": int(masked.sum())}
            return {}
        self._accumulate(info, len(scene), step)
        report: dict[str, int] = {}
        if step > cfg.refine_start_iter and step % cfg.refine_every == 0:
            report.update(self._grow(scene, optimizer, step))
            report["pruned"] = self._prune(scene, optimizer, step)
            self.grad2d = self.count = None
        if step % cfg.reset_every == 0 and step > 0:
            self._reset_opacity(scene, optimizer)
            report["opacity_reset"] = 1
        return report

    def _accumulate(self, info: dict, n: int, step: int) -> None:
        if self.last_seen is None or len(self.last_seen) != n:
            self.last_seen = torch.full((n,), step, dtype=torch.long, device=info["radii"].device)
        self.last_seen = torch.where(info["radii"].reshape(n) > 0, step, self.last_seen)
        grad = info["means2d"].grad
        if grad is None:
            return
        if self.grad2d is None or len(self.grad2d) != n:
            self.grad2d = torch.zeros(n, device=grad.device)
            self.count = torch.zeros(n, device=grad.device)
        grad = grad.detach().reshape(n, 2)  # gsplat's screen means carry a camera axis: [1, N, 2]
        scaled = torch.stack([grad[:, 0] * (info["width"] / 2.0), grad[:, 1] * (info["height"] / 2.0)], dim=-1)
        visible = (info["radii"] > 0).to(self.count.dtype)  # masks by arithmetic: no host sync on CUDA
        self.grad2d += scaled.norm(dim=-1) * visible
        self.count += visible

    def _grow(self, scene, optimizer, step: int) -> dict[str, int]:
        if self.grad2d is None:
            return {"duplicated": 0, "split": 0}
        cfg = self.cfg
        avg = self.grad2d / self.count.clamp_min(1)
        high = avg > cfg.grow_grad2d
        if cfg.max_gaussians > 0:
            room = max(cfg.max_gaussians - len(scene), 0)
            if int(high.sum()) > room:
                keep = torch.zeros_like(high)
                keep[torch.topk(torch.where(high, avg, -1.0), room).indices] = True
                high = high & keep
        small = scene.log_scales.data.exp().max(dim=-1).values <= cfg.grow_scale3d * self.scene_scale
        dupli, split = high & small, high & ~small
        n_dupli, n_split = int(dupli.sum()), int(split.sum())
        if n_dupli:
            replace_gaussians(scene, optimizer, None, {k: getattr(scene, k).data[dupli] for k in scene.gaussian_parameter_names()})
            split = torch.cat([split, torch.zeros(n_dupli, dtype=torch.bool, device=split.device)])
        if n_split:
            replace_gaussians(scene, optimizer, ~split, self._split_children(scene, split))
        if self.last_seen is not None and (n_dupli or n_split):  # split children count as seen now
            kept = torch.cat([self.last_seen, self.last_seen[dupli]])[~split]
            self.last_seen = torch.cat([kept, kept.new_full((len(scene) - len(kept),), step)])
        return {"duplicated": n_dupli, "split": n_split}

    @staticmethod
    def _split_children(scene, split: torch.Tensor) -> dict[str, torch.Tensor]:
        """Two children per selected Gaussian: means sampled from the parent, scales divided by 1.6."""
        scales = scene.log_scales.data[split].exp()
        rot = quat_to_rotmat(scene.quats.data[split])
        samples = torch.einsum("nij,nj,bnj->bni", rot, scales, torch.randn(2, len(scales), 3, device=scales.device))
        children = {}
        for name in scene.gaussian_parameter_names():
            parent = getattr(scene, name).data[split]
            children[name] = parent.repeat(2, *[1] * (parent.dim() - 1))
        children["means"] = (scene.means.data[split][None] + samples).reshape(-1, 3)
        children["log_scales"] = torch.log(scales / 1.6).repeat(2, 1)
        return children

    def _prune(self, scene, optimizer, step: int) -> int:
        cfg = self.cfg
        prune = scene.opacities().detach() < cfg.prune_opa
        if step > cfg.reset_every:
            prune |= scene.log_scales.data.exp().max(dim=-1).values > cfg.prune_scale3d * self.scene_scale
        if hasattr(scene, "prune_mask"):
            prune |= scene.prune_mask()
        if cfg.unseen_after > 0 and self.last_seen is not None:
            prune |= step - self.last_seen >= cfg.unseen_after
        n = int(prune.sum())
        if n:
            replace_gaussians(scene, optimizer, ~prune, None)
            self.last_seen = None if self.last_seen is None else self.last_seen[~prune]
        return n

    def _reset_opacity(self, scene, optimizer) -> None:
        limit = math.log(2 * self.cfg.prune_opa / (1 - 2 * self.cfg.prune_opa))
        scene.opacity_logits.data.clamp_(max=limit)
        for value in optimizer.state.get(scene.opacity_logits, {}).values():
            if torch.is_tensor(value) and value.shape == scene.opacity_logits.shape:
                value.zero_()
