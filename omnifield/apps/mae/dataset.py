"""Labelled grids of procedural scenes, written straight from the analytic scene; and loading them as tensors.

A data set is a folder of ``scene_<seed>.npz`` files (see :mod:`omnifield.apps.mae.grid`), each with
RGBA, voxel class labels (majority over the occupied sub-voxel samples) and the oriented boxes of its objects.

Example::

    paths = write_scene_grids("grids/", seeds=range(200), resolution=32)
    rgba, labels = load_grid_stack(paths)   # [200, 4, 32, 32, 32], [200, 32, 32, 32]
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm import tqdm

from omnifield.apps.mae.grid import RadianceGrid, grid_shape, load_grid, save_grid
from omnifield.apps.mae.scene import CLASS_NAMES, SCENE_AABB, SOLID_DENSITY, Scene, generate_scene
from omnifield.errors import OmnifieldError


def scene_grid(scene: Scene, resolution: int = 32, supersample: int = 2, delta: float = 0.01) -> RadianceGrid:
    """Labelled :class:`RadianceGrid` of ``scene`` over ``SCENE_AABB``.

    Computes the same RGBA as ``sample_field_grid(SceneField(scene), ...)`` (a test checks it) but
    finds the containing primitive of each sub-voxel point once (on the fine lattice), then derives opacity,
    albedo and the label: the most frequent class among the voxel's occupied sub-points (empty if none).
    """
    shape = grid_shape(SCENE_AABB, resolution)
    lo, hi = np.asarray(SCENE_AABB[:3]), np.asarray(SCENE_AABB[3:])
    fine = [n * supersample for n in shape]
    owner = scene.owner_on_lattice(lo, (hi - lo) / np.asarray(fine), fine)
    x, y, z, s = *shape, supersample
    owner = owner.reshape(x, s, y, s, z, s).permute(0, 2, 4, 1, 3, 5).reshape(x * y * z, s**3)  # [V, S^3]
    occupied = (owner >= 0).float()
    colors = torch.cat([torch.zeros(1, 3), torch.as_tensor(scene.colors)])[owner + 1]  # [V, S, 3]
    rgb = (colors * occupied[..., None]).sum(1) / occupied.sum(1, keepdim=True).clamp_min(1.0)
    alpha = 1 - torch.exp(-SOLID_DENSITY * occupied.mean(1) * delta)
    class_of = torch.as_tensor(np.concatenate([[0], scene.labels]), dtype=torch.int64)
    votes = torch.nn.functional.one_hot(class_of[owner + 1], len(CLASS_NAMES))[:, :, 1:].sum(1)  # [V, C-1]
    labels = torch.where(votes.sum(1) > 0, votes.argmax(1) + 1, 0)
    rgba = torch.cat([rgb, alpha[:, None]], 1).T.reshape(4, *shape)
    return RadianceGrid(
        rgba=rgba.numpy(),
        aabb=SCENE_AABB,
        labels=labels.reshape(shape).numpy(),
        boxes=scene.oriented_boxes(),
        box_labels=scene.labels.astype(np.int64),
        meta={"resolution": resolution, "delta": delta, "supersample": supersample, "seed": scene.seed},
    )


def write_scene_grids(out_dir, seeds: Iterable[int], resolution: int = 32, supersample: int = 2) -> list[Path]:
    """Generate and save one labelled grid per seed (skipping files already present); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in tqdm(list(seeds), desc="scene grids", unit="scene"):
        path = out / f"scene_{seed:05d}.npz"
        if not path.exists():
            save_grid(scene_grid(generate_scene(seed), resolution, supersample), path)
        paths.append(path)
    return paths


def list_grids(data_dir) -> list[Path]:
    """Sorted ``*.npz`` grid files of a folder; :class:`OmnifieldError` if none."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise OmnifieldError(f"{folder}: grid folder does not exist")
    paths = sorted(folder.glob("*.npz"))
    if not paths:
        raise OmnifieldError(f"{folder}: no .npz grid files found")
    return paths


def load_grid_stack(paths: list[Path], with_labels: bool = False):
    """Stack grids of equal shape: ``rgba [B, 4, X, Y, Z]`` float32 (and ``labels [B, X, Y, Z]`` int64)."""
    grids = [load_grid(p) for p in paths]
    shapes = {g.rgba.shape for g in grids}
    if len(shapes) != 1:
        raise OmnifieldError(f"grids in {Path(paths[0]).parent} have different shapes: {sorted(shapes)}")
    rgba = torch.from_numpy(np.stack([g.rgba for g in grids]))
    if not with_labels:
        return rgba
    missing = [str(p) for p, g in zip(paths, grids) if g.labels is None]
    if missing:
        raise OmnifieldError(f"{missing[0]}: grid has no voxel labels (needed for fine-tuning)")
    return rgba, torch.from_numpy(np.stack([g.labels for g in grids]))
