"""Grids from trained reconstruction runs (``omnifield train`` folders): any field backend, its own box,
colour averaged over the directions from the run's training cameras."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from omnifield.apps.mae.grid import RadianceGrid, sample_field_grid
from omnifield.apps.recon.run import Run
from omnifield.errors import OmnifieldError


def training_camera_centres(data_dir, max_views: int) -> torch.Tensor | None:
    """Centres ``[K, 3]`` of up to ``max_views`` evenly spread cameras of ``transforms_train.json``, or None."""
    path = Path(data_dir) / "transforms_train.json"
    if not path.is_file():
        return None
    try:
        frames = json.loads(path.read_text())["frames"]
        centres = torch.tensor([f["transform_matrix"] for f in frames], dtype=torch.float32)[:, :3, 3]
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise OmnifieldError(f"{path}: cannot read camera poses ({exc})") from None
    step = max(1, len(centres) // max_views)
    return centres[::step][:max_views]


def grid_from_run(run_dir, resolution: int = 32, supersample: int = 1, max_views: int = 16) -> RadianceGrid:
    """Sample the field of a trained run over its box (see :func:`sample_field_grid`)."""
    run, _, _ = Run.open(run_dir)
    field = run.field.eval()
    origins = training_camera_centres(run.data_dir, max_views) if run.data_dir else None
    grid = sample_field_grid(field, tuple(field.aabb.tolist()), resolution, supersample=supersample, view_origins=origins)
    grid.meta.update(run=str(run_dir), method=run.method, views=0 if origins is None else len(origins))
    return grid
