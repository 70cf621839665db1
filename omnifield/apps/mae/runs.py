"""Saving and re-opening MAE / segmenter models: ``<folder>/model.safetensors`` (weights + JSON meta).

The meta holds ``kind`` (``"mae"`` or ``"segmenter"``), the :class:`MAE3DConfig` (via
``config_to_dict``), ``n_classes`` for segmenters, and whatever metrics the caller adds. A training
run also keeps ``<folder>/training.safetensors``, the checkpoint it resumes from (the same meta plus
the optimiser, generator and step; see :mod:`omnifield.apps.mae.train`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from omnifield.apps.mae.model import MAE3D, MAE3DConfig, VoxelSegmenter
from omnifield.config import config_from_dict, config_to_dict
from omnifield.errors import OmnifieldError
from omnifield.io.checkpoint import load_checkpoint, load_module_state, module_state, save_checkpoint

MODEL_FILE = "model.safetensors"
TRAINING_FILE = "training.safetensors"


def model_info(model: MAE3D | VoxelSegmenter) -> dict[str, Any]:
    """What re-building ``model`` takes: ``kind``, ``config`` (and ``n_classes``, ``head_channels``)."""
    kind = "mae" if isinstance(model, MAE3D) else "segmenter"
    info = {"kind": kind, "config": config_to_dict(model.cfg)}
    if kind == "segmenter":
        info.update(n_classes=model.n_classes, head_channels=model.head_channels)
    return info


def save_model(folder, model: MAE3D | VoxelSegmenter, meta: dict[str, Any]) -> Path:
    """Write ``folder/model.safetensors`` atomically; returns its path."""
    path = Path(folder) / MODEL_FILE
    save_checkpoint(path, module_state("model", model), {**model_info(model), **meta})
    return path


def build_model(meta: dict[str, Any], path: Path, kind: str | None = None) -> MAE3D | VoxelSegmenter:
    """A fresh model of the kind and config that checkpoint ``path``'s ``meta`` describes (``kind`` checks it)."""
    found = meta.get("kind")
    if found not in ("mae", "segmenter"):
        raise OmnifieldError(f"{path}: not a NeRF-MAE model (kind {found!r})")
    if kind is not None and found != kind:
        raise OmnifieldError(f"{path}: holds a {found} model, expected a {kind} model")
    cfg = config_from_dict(meta.get("config"), f"{path} config")
    if not isinstance(cfg, MAE3DConfig):
        raise OmnifieldError(f"{path}: config is not an mae3d config")
    return MAE3D(cfg) if found == "mae" else VoxelSegmenter(cfg, meta["n_classes"], meta["head_channels"])


def load_model(folder, kind: str | None = None) -> tuple[MAE3D | VoxelSegmenter, dict[str, Any]]:
    """Re-open a model folder (or the ``.safetensors`` file itself); ``kind`` checks what it holds."""
    path = Path(folder)
    if path.is_dir():
        path = path / MODEL_FILE
    tensors, meta = load_checkpoint(path)
    model = build_model(meta, path, kind)
    load_module_state("model", model, tensors, str(path))
    model.eval()
    return model, meta


def segmenter_from_mae(mae: MAE3D | None, cfg: MAE3DConfig, n_classes: int, seed: int) -> VoxelSegmenter:
    """A fresh segmenter (seeded init) whose encoder is copied from ``mae`` when given (else from scratch)."""
    torch.manual_seed(seed)
    model = VoxelSegmenter(cfg, n_classes)
    if mae is not None:
        model.encoder.load_state_dict(mae.encoder.state_dict())
    return model
