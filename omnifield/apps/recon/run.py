"""A run folder: ``config.json``, ``checkpoint.safetensors``, ``metrics.json``, ``log.jsonl``, renders.

:class:`Run` bundles everything needed to continue or use a trained scene: the field, the
renderer (with its occupancy grid), the per-image pose corrections of real captures, and the
configs, and knows how to save and re-open them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from omnifield.apps.recon.config import TrainConfig
from omnifield.config import config_from_dict, config_to_dict, replace_config
from omnifield.data.blender import PosedImages
from omnifield.data.scene import Normalization, scene_normalization
from omnifield.errors import OmnifieldError
from omnifield.fields.radiance import RadianceField, RadianceFieldConfig
from omnifield.fields.registry import build_field
from omnifield.io.atomic import write_text_atomic
from omnifield.io.checkpoint import load_checkpoint, load_module_state, module_state, save_checkpoint
from omnifield.renderers.camera_opt import CameraOptimizer
from omnifield.renderers.occupancy import OccupancyGrid
from omnifield.renderers.volume import VolumeRenderer

CHECKPOINT = "checkpoint.safetensors"
CONFIG = "config.json"


DISTORTION_WEIGHT_PHOTOS = 0.002  # nerfacto's distortion_loss_mult
DEPTH_WEIGHT_PHOTOS = 0.1  # the sparse depth loss on photos of scenes (measured on kitchen25, see the README)


def resolve_capture_options(field_config: Any, train_config: TrainConfig, train_data: PosedImages | None,
                            space: str = "box") -> tuple[Any, TrainConfig]:
    """Settle ``camera_opt`` / ``appearance_dim`` "auto": both off (see :class:`TrainConfig` for the
    measurements behind it), and ``distortion_weight`` / ``depth_weight`` "auto": ``DISTORTION_WEIGHT_PHOTOS`` /
    ``DEPTH_WEIGHT_PHOTOS`` for photos of a scene (``space`` "ndc" or "contract"), 0 for objects ("box");
    explicit values are kept.

    Returns the train config with the resolved values and the field config sized for them (its
    ``appearance_dim`` and ``n_images``, the number of training views).
    """
    camera_opt = "off" if train_config.camera_opt == "auto" else train_config.camera_opt
    dim = max(train_config.appearance_dim, 0)
    if isinstance(field_config, RadianceFieldConfig):
        if dim > 0 and train_data is None:
            raise OmnifieldError("appearance codes need the training views (one code per view)")
        n_images = len(train_data.images) if dim > 0 else 0
        field_config = replace_config(field_config, appearance_dim=dim, n_images=n_images)
    elif train_config.appearance_dim > 0:
        raise OmnifieldError(f"{type(field_config).__name__} has no colour head for appearance codes")
    else:
        dim = 0
    photos = space != "box"
    distortion, depth = train_config.distortion_weight, train_config.depth_weight
    distortion = distortion if distortion >= 0 else DISTORTION_WEIGHT_PHOTOS if photos else 0.0
    depth = depth if depth >= 0 else DEPTH_WEIGHT_PHOTOS if photos else 0.0
    return field_config, replace_config(train_config, camera_opt=camera_opt, appearance_dim=dim,
                                        distortion_weight=distortion, depth_weight=depth)


def data_normalization(data_dir: str) -> Normalization:
    """The world-to-box normalisation of the capture a run was trained on; identity (with a note on stdout) when
    its data folder is gone, so exports are then in the run's box coordinates."""
    if not data_dir or not Path(data_dir).is_dir():
        print(f"note: data folder {data_dir!r} not found; writing in the run's box coordinates")
        return Normalization()
    return scene_normalization(data_dir)


@dataclass
class Run:
    """A trained (or training) scene: field + renderer + configs, living in ``path``.

    It is also what :func:`~omnifield.apps.recon.open_run.open_run` returns for a radiance-field run folder
    (``kind`` "field"; the splat counterpart is :class:`~omnifield.apps.recon.open_run.SplatRun`).
    """

    path: Path
    field: torch.nn.Module
    renderer: VolumeRenderer
    field_config: Any
    renderer_config: Any
    train_config: Any
    data_dir: str
    method: str
    downscale: int = 1
    camera_opt: CameraOptimizer | None = None
    step: int = 0  # the checkpoint's step when re-opened

    @classmethod
    def create(cls, path: Path, method: str, field_config, renderer_config, train_config, data_dir: str,
               downscale: int = 1, train_data: PosedImages | None = None) -> "Run":
        """A fresh run with a newly initialised field. ``train_data`` (the training views) settles the
        "auto" options (:func:`resolve_capture_options`) and gives pose refinement its starting poses."""
        field_config, train_config = resolve_capture_options(field_config, train_config, train_data,
                                                             renderer_config.space)
        c2w = None if train_data is None else train_data.cameras.c2w
        return cls._assemble(path, method, field_config, renderer_config, train_config, data_dir, downscale, c2w)

    @classmethod
    def _assemble(cls, path, method: str, field_config, renderer_config, train_config, data_dir: str,
                  downscale: int, train_c2w: torch.Tensor | None) -> "Run":
        field = build_field(field_config)
        renderer = VolumeRenderer(field.aabb, renderer_config)
        camera_opt = None
        if getattr(train_config, "camera_opt", "off") == "SE3":
            if train_c2w is None:
                raise OmnifieldError(f"{path}: camera_opt=SE3 needs the poses of the training views")
            camera_opt = CameraOptimizer(train_c2w)
        return cls(Path(path), field, renderer, field_config, renderer_config, train_config, str(data_dir), method,
                   downscale, camera_opt)

    kind = "field"

    @property
    def occupancy(self) -> OccupancyGrid:
        """The renderer's occupancy grid (its visual hull and measured densities)."""
        return self.renderer.grid

    def normalization(self) -> Normalization:
        """World-to-box normalisation of the run's capture (:func:`data_normalization`)."""
        return data_normalization(self.data_dir)

    def render(self, cameras, index: int, background: torch.Tensor, chunk: int = 8192,
               appearance: torch.Tensor | None = None) -> dict[str, Any]:
        """View ``index`` of ``cameras`` on ``background [3]``: ``rgb [H, W, 3]``, ``depth [H, W]``,
        ``alpha [H, W]`` and ``samples_per_ray``, ``chunk`` rays at a time (``appearance [E]``: one code)."""
        out = self.renderer.render_image(self.field, cameras, index, background, chunk=chunk, appearance=appearance)
        out["alpha"] = out.pop("opacity")
        return out

    def to(self, device: torch.device | str) -> "Run":
        """Move the field, the renderer (occupancy grid included) and the pose corrections to ``device``."""
        self.field.to(device)
        self.renderer.to(device)
        if self.camera_opt is not None:
            self.camera_opt.to(device)
        return self

    def training_views(self, cameras) -> tuple[Any, torch.Tensor | None]:
        """The training views as trained: ``cameras`` with the refined poses (when poses were refined)
        and each view's appearance code ``[N, E]`` (None without codes). Held-out views use neither:
        their given poses and the field's mean code."""
        appearance = self.field.appearance if isinstance(self.field, RadianceField) else None
        n = len(cameras)
        for what, count in (("pose corrections", None if self.camera_opt is None else self.camera_opt.c2w.shape[0]),
                            ("appearance codes", None if appearance is None else appearance.embedding.num_embeddings)):
            if count is not None and count != n:
                raise OmnifieldError(f"{self.path}: the run has {what} for {count} training views, the data has {n}")
        if self.camera_opt is not None:
            cameras = dataclasses.replace(cameras, c2w=self.camera_opt.refined_c2w().detach().to(cameras.c2w.device))
        return cameras, None if appearance is None else appearance.embedding.weight.detach()

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
        if self.camera_opt is not None:
            tensors.update(module_state("camera_opt", self.camera_opt))
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
        run = cls._assemble(
            path,
            str(cfg.get("method", "?")),
            config_from_dict(cfg["field"], f"{ckpt} field config"),
            config_from_dict(cfg["renderer"], f"{ckpt} renderer config"),
            config_from_dict(cfg["train"], f"{ckpt} train config"),
            str(cfg.get("data", "")),
            downscale,
            tensors.get("camera_opt/c2w"),
        )
        run.step = step
        load_module_state("field", run.field, tensors, str(ckpt))
        load_module_state("renderer", run.renderer, tensors, str(ckpt))
        if run.camera_opt is not None:
            load_module_state("camera_opt", run.camera_opt, tensors, str(ckpt))
        return run, tensors, meta
