"""A run folder: ``config.json``, ``checkpoint.safetensors``, ``metrics.json``, ``log.jsonl``, renders.

:class:`Run` bundles everything needed to continue or use a trained scene: the field, the
renderer (with its occupancy grid), and the configs, and knows how to save and re-open them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from omnifield.apps.recon.config import TrainConfig  # noqa: F401 - registers the 'train' config type
from omnifield.config import config_from_dict, config_to_dict
from omnifield.errors import OmnifieldError
from omnifield.fields.registry import build_field
from omnifield.io.atomic import write_text_atomic
from omnifield.io.checkpoint import load_checkpoint, load_module_state, module_state, save_checkpoint
from omnifield.renderers.volume import VolumeRenderer

CHECKPOINT = "checkpoint.safetensors"
CONFIG = "config.json"


@dataclass
class Run:
    """A trained (or training) scene: field + renderer + configs, living in ``path``."""

    path: Path
    field: torch.nn.Module
    renderer: VolumeRenderer
    field_config: Any
    renderer_config: Any
    train_config: Any
    data_dir: str
    method: str
    downscale: int = 1

    @classmethod
    def create(cls, path: Path, method: str, field_config, renderer_config, train_config, data_dir: str,
               downscale: int = 1) -> "Run":
        """A fresh run with a newly initialised field."""
        field = build_field(field_config)
        renderer = VolumeRenderer(field.aabb, renderer_config)
        return cls(Path(path), field, renderer, field_config, renderer_config, train_config, str(data_dir), method,
                   downscale)

    def to(self, device: torch.device | str) -> "Run":
        """Move the field and the renderer (occupancy grid included) to ``device``; returns ``self``."""
        self.field.to(device)
        self.renderer.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.renderer.aabb.device

    def config_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "data": self.data_dir,
            "downscale": self.downscale,
            "field": config_to_dict(self.field_config),
            "renderer": config_to_dict(self.renderer_config),
            "train": config_to_dict(self.train_config),
        }

    def save(self, step: int, extra_tensors: dict[str, torch.Tensor], extra_meta: dict[str, Any]) -> None:
        """Atomically write ``config.json`` and the checkpoint (weights, grid, ``extra`` state)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path / CONFIG, json.dumps(self.config_dict(), indent=2))
        tensors = {**module_state("field", self.field), **module_state("renderer", self.renderer), **extra_tensors}
        save_checkpoint(self.path / CHECKPOINT, tensors, {"step": step, "config": self.config_dict(), **extra_meta})

    @classmethod
    def open(cls, path: str | Path) -> tuple["Run", dict[str, torch.Tensor], dict[str, Any]]:
        """Re-open a run folder: ``(run, checkpoint tensors, checkpoint meta)``."""
        path = Path(path)
        if not path.is_dir():
            raise OmnifieldError(f"{path}: run folder not found")
        ckpt = path / CHECKPOINT
        tensors, meta = load_checkpoint(ckpt)
        cfg = meta.get("config")
        if meta.get("method") == "splat":
            raise OmnifieldError(f"{ckpt}: holds a splat run, not a NeRF run (use the splat commands: export splat, "
                                 "convert)")
        if not isinstance(cfg, dict) or "field" not in cfg:
            raise OmnifieldError(f"{ckpt}: checkpoint has no field config")
        missing = [key for key in ("renderer", "train") if not isinstance(cfg.get(key), dict)]
        if missing:
            raise OmnifieldError(f"{ckpt}: checkpoint metadata lacks the {' and '.join(missing)} config")
        downscale, step = cfg.get("downscale", 1), meta.get("step", 0)
        for key, value, low in (("config.downscale", downscale, 1), ("step", step, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise OmnifieldError(f"{ckpt}: checkpoint metadata '{key}' must be an integer >= {low}, got {value!r}")
        run = cls.create(
            path,
            str(cfg.get("method", "?")),
            config_from_dict(cfg["field"], f"{ckpt} field config"),
            config_from_dict(cfg["renderer"], f"{ckpt} renderer config"),
            config_from_dict(cfg["train"], f"{ckpt} train config"),
            str(cfg.get("data", "")),
            downscale,
        )
        load_module_state("field", run.field, tensors, str(ckpt))
        load_module_state("renderer", run.renderer, tensors, str(ckpt))
        return run, tensors, meta
