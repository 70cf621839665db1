"""One way to open any run folder for the commands that use a trained scene (``eval``, ``render``, ``export``,
``view``, ``nav export``): :func:`open_run`.

A radiance-field run opens as :class:`~omnifield.apps.recon.run.Run`, a splat run (its checkpoint, or the
Compact-3DGS ``scene.ofz`` alone, or an ``.ofz`` file) as :class:`SplatRun`. Both offer the same members:
``kind`` ("field" | "splat"), ``field`` (a :class:`~omnifield.fields.protocol.RadianceFieldLike`: the field
or the Gaussians), ``render(cameras, index, background) -> {rgb [H, W, 3], alpha [H, W], depth [H, W]?}``,
``training_views(cameras)``, ``data_dir``, ``downscale``, ``step``, ``method``, ``normalization()`` and
``occupancy`` (the occupancy grid, None for splats).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from omnifield.apps.recon.run import CHECKPOINT, Run, data_normalization
from omnifield.data.scene import Normalization
from omnifield.errors import OmnifieldError
from omnifield.fields.gaussians import GaussianScene
from omnifield.io.checkpoint import load_checkpoint
from omnifield.io.run_folder import checkpoint_meta
from omnifield.io.splat_ofz import load_compressed
from omnifield.io.splat_run import scene_from_checkpoint
from omnifield.renderers.splat import SplatRenderer

OFZ = "scene.ofz"  # the compressed Compact-3DGS scene of a splat run


@dataclass
class SplatRun:
    """A trained splat run opened for use: the Gaussians (a radiance field too) and their renderer."""

    path: Path
    field: GaussianScene
    data_dir: str = ""
    downscale: int = 1
    step: int = 0
    method: str = "splat"

    kind = "splat"
    occupancy = None  # splats have no occupancy grid: exports sample the Gaussians' density

    def __post_init__(self):
        self.field.eval().requires_grad_(False)  # opened for use: queries take the native, gradient-free paths

    def normalization(self) -> Normalization:
        """World-to-box normalisation of the run's capture (identity when the data folder is gone)."""
        return data_normalization(self.data_dir)

    @torch.no_grad()
    def render(self, cameras, index: int, background: torch.Tensor, chunk: int = 8192,
               appearance: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """View ``index`` of ``cameras`` on ``background [3]``: ``rgb [H, W, 3]`` and ``alpha [H, W]`` (on the
        CPU). ``chunk`` and ``appearance`` belong to field runs: a splat view is rasterized whole, without codes."""
        renderer = SplatRenderer(background=tuple(float(v) for v in background))
        out = renderer.render_camera(self.field, cameras, index)
        return {"rgb": out["rgb"].cpu(), "alpha": out["alpha"].cpu()}

    def training_views(self, cameras) -> tuple[Any, None]:
        """The training views as trained: splats refine no poses and have no appearance codes."""
        return cameras, None

    def to(self, device: torch.device | str) -> "SplatRun":
        """Move the Gaussians to ``device`` (renders still come back on the CPU)."""
        self.field.to(device)
        return self


def _settings(record: Any, where: Path) -> tuple[str, int]:
    """The data folder and downscale a splat run was trained with, from its settings (``config.json``)."""
    record = record if isinstance(record, dict) else {}
    options = record.get("options") if isinstance(record.get("options"), dict) else {}
    downscale = options.get("downscale", 1)
    if not isinstance(downscale, int) or isinstance(downscale, bool) or downscale < 1:
        raise OmnifieldError(f"{where}: 'options.downscale' must be an integer >= 1, got {downscale!r}")
    return str(record.get("data", "")), downscale


def _open_ofz(path: Path) -> SplatRun:
    """A Compact-3DGS file; the settings come from the ``config.json`` beside it, when there is one."""
    scene = load_compressed(path)
    config = path.parent / "config.json"
    record = None
    if config.is_file():
        try:
            record = json.loads(config.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise OmnifieldError(f"{config}: not valid JSON ({exc})") from None
    data_dir, downscale = _settings(record, config)
    return SplatRun(path.parent, scene, data_dir, downscale, method="splat-compact")


def open_run(path: str | Path) -> Run | SplatRun:
    """The trained scene in ``path`` (a run folder, or a Compact-3DGS ``.ofz`` file), in evaluation mode on the
    CPU (a splat's parameters frozen): a :class:`Run` for radiance fields, a :class:`SplatRun` for Gaussians (see the module docstring)."""
    path = Path(path)
    if path.suffix == ".ofz":
        return _open_ofz(path)
    checkpoint = path / CHECKPOINT
    if path.is_dir() and not checkpoint.exists() and (path / OFZ).is_file():
        return _open_ofz(path / OFZ)
    if (checkpoint_meta(checkpoint) or {}).get("method") == "splat":
        tensors, meta = load_checkpoint(checkpoint)
        scene = scene_from_checkpoint(tensors, meta, checkpoint)
        data_dir, downscale = _settings(meta.get("config"), checkpoint)
        step = meta.get("step", 0)
        method = "splat-compact" if "compact" in meta else "splat"
        return SplatRun(path, scene, data_dir, downscale, step if isinstance(step, int) else 0, method)
    run, _, _ = Run.open(path)
    run.field.eval()
    return run
