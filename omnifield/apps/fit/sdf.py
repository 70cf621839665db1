"""Fit an :class:`~omnifield.fields.sdf_field.SDFField` to a triangle mesh, extract and score a mesh.

- Targets: points on the surface, near it (Gaussian offsets) and uniform in the box; signed distance
  from libigl, the sign from the generalised winding number (robust on meshes with holes).
- Loss: ``|s - s*|`` (L1) + ``eikonal_weight * (|grad s| - 1)^2`` on the uniform points.
- Mesh: marching cubes (scikit-image) of the field on a grid, exported through trimesh.
- Metrics against the input mesh: Chamfer distance (mean of both directions, surface samples), normal
  consistency (mean ``|n_a . n_b|`` of nearest pairs) and volume IoU (winding-number inside tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import igl
import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from omnifield.apps.fit.optim import make_optimizer
from omnifield.config import config_to_dict, register_config, replace_config
from omnifield.engine import LoopConfig
from omnifield.engine.regression import FieldFit, run_fit
from omnifield.errors import OmnifieldError
from omnifield.fields.sdf_field import SDFField


@register_config("fit_sdf")
@dataclass
class FitSDFConfig:
    """Samples, batch, losses, learning rates, marching-cubes grid; ``loop``: the budget (steps and/or
    minutes), log and checkpoint intervals of the training engine."""

    backend: str = ""  # the preset the field was sized from (a label for reports)
    n_samples: int = 200000
    batch_points: int = 8192
    near_sigma: float = 0.01  # offsets of near-surface samples, in units of the box size
    eikonal_weight: float = 0.1
    lr_grid: float = 1e-2
    lr_mlp: float = 1e-3
    mesh_resolution: int = 128
    padding: float = 0.1
    seed: int = 0
    loop: LoopConfig = dataclass_field(default_factory=lambda: LoopConfig(steps=2000))


def load_mesh(path: str | Path) -> trimesh.Trimesh:
    """A triangle mesh (scenes are merged); :class:`OmnifieldError` if unreadable or empty."""
    path = Path(path)
    try:
        mesh = trimesh.load(path, force="mesh")
    except Exception as exc:  # noqa: BLE001 - trimesh raises many types on bad files
        raise OmnifieldError(f"{path}: cannot read mesh ({exc})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise OmnifieldError(f"{path}: no triangles found")
    return mesh


def mesh_box(mesh: trimesh.Trimesh, padding: float) -> tuple[float, ...]:
    """A cube around the mesh, ``padding`` x its size on each side: ``(xmin, ymin, zmin, xmax, ymax, zmax)``."""
    lo, hi = mesh.bounds
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * (1 + 2 * padding)
    return tuple(float(v) for v in np.concatenate([centre - half, centre + half]))


def inside_mesh(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """``[P, 3] -> [P]`` bool: generalised winding number > 1/2 (libigl's fast winding number)."""
    verts, faces = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    return igl.fast_winding_number(verts, faces, np.asarray(points, np.float64)) > 0.5


def signed_distance(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """``[P, 3] -> [P]`` distance to the surface, negative inside (winding-number sign)."""
    verts, faces = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    pts = np.asarray(points, np.float64)
    dist = np.abs(igl.signed_distance(pts, verts, faces, sign_type=igl.SIGNED_DISTANCE_TYPE_UNSIGNED)[0])
    return np.where(inside_mesh(mesh, pts), -dist, dist)


def sample_sdf_targets(mesh: trimesh.Trimesh, box: tuple, n: int, near_sigma: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training points ``[n, 3]`` and their signed distances ``[n]``: 1/4 on the surface,
    1/2 near it (two offset scales), 1/4 uniform in the box (the first quarter is the eikonal set)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.array(box[:3]), np.array(box[3:])
    size = (hi - lo).max()
    n_uni, n_surf = n // 4, n // 4
    n_near = n - n_uni - n_surf
    uniform = lo + rng.random((n_uni, 3)) * (hi - lo)
    surface = np.asarray(trimesh.sample.sample_surface(mesh, n_surf + n_near, seed=seed)[0])
    scales = np.where(np.arange(n_near) % 2 == 0, near_sigma, 5 * near_sigma)[:, None] * size
    near = np.clip(surface[n_surf:] + rng.normal(size=(n_near, 3)) * scales, lo, hi)
    points = np.concatenate([uniform, surface[:n_surf], near])
    sdf = np.concatenate([signed_distance(mesh, uniform), np.zeros(n_surf), signed_distance(mesh, near)])
    return torch.from_numpy(points).float(), torch.from_numpy(sdf).float()


def init_rbf_centers(field: SDFField, points: torch.Tensor, sdf: torch.Tensor, size: float) -> None:
    """NeuRBF centres by k-means weighted by closeness to the surface, ``1 / (|s| + 0.01 size)``: the
    gradient magnitude of a smoothed occupancy, i.e. where the target varies most."""
    if hasattr(field.encoding, "init_centers"):
        field.encoding.init_centers(field.normalize(points), 1.0 / (sdf.abs() + 0.01 * size))


def fit_sdf(mesh: trimesh.Trimesh, field_cfg: Any, cfg: FitSDFConfig, checkpoint: Path | None = None,
            resume: tuple[dict, dict] | None = None, log: Path | None = None) -> dict[str, Any]:
    """Train a signed-distance field of ``mesh`` under ``cfg.loop`` (L1 to exact distances + eikonal).

    ``checkpoint``, ``resume``, ``log``: as for :func:`~omnifield.apps.fit.image.fit_image`. Returns
    ``{"field", "seconds", "steps", "loss"}`` (``seconds``: training only; the target sampling, the
    NeuRBF k-means and the first step come before)."""
    torch.manual_seed(cfg.seed)
    box = mesh_box(mesh, cfg.padding)
    fitted_box = ((resume[1].get("config") or {}).get("field") or {}).get("aabb") if resume is not None else None
    if fitted_box is not None and not np.allclose(fitted_box, box, rtol=1e-5, atol=1e-6):
        raise OmnifieldError(f"--resume: the fit in {checkpoint} was of another mesh (box {tuple(fitted_box)}, "
                             f"this mesh's is {box}): pass the same mesh")
    field_cfg = replace_config(field_cfg, aabb=box)
    field = field_cfg.build()
    points, sdf = sample_sdf_targets(mesh, box, cfg.n_samples, cfg.near_sigma, cfg.seed)
    size = box[3] - box[0]
    if resume is None:
        init_rbf_centers(field, points, sdf, size)
    n_uniform = cfg.n_samples // 4

    def batch_loss(generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, points.shape[0], (cfg.batch_points,), generator=generator)
        loss = torch.mean(torch.abs(field(points[idx]) - sdf[idx])) / size
        if cfg.eikonal_weight > 0:
            eik_idx = torch.randint(0, n_uniform, (cfg.batch_points // 4,), generator=generator)
            _, grad = field.sdf_and_gradient(points[eik_idx])
            loss = loss + cfg.eikonal_weight * torch.mean((grad.norm(dim=-1) - 1.0) ** 2)
        return loss

    meta = {"config": {"field": config_to_dict(field_cfg), "fit": config_to_dict(cfg)}}
    task = FieldFit(field, make_optimizer(field, cfg.lr_grid, cfg.lr_mlp), batch_loss, cfg.seed,
                    checkpoint=checkpoint, meta=meta)
    engine = run_fit(task, cfg.loop, resume, "fit sdf", log)
    return {"field": field, "seconds": engine.elapsed, "steps": engine.step, "loss": task.stats.get("loss", 0.0)}


@torch.no_grad()
def extract_mesh(field: SDFField, resolution: int, chunk: int = 65536) -> trimesh.Trimesh:
    """Marching cubes of the zero level set on a ``resolution^3`` grid over the field's box."""
    lo, hi = field.aabb[:3], field.aabb[3:]
    axes = [torch.linspace(float(lo[i]), float(hi[i]), resolution) for i in range(3)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    values = torch.cat([field(c) for c in grid.split(chunk)]).reshape(resolution, resolution, resolution).numpy()
    if not (values.min() < 0 < values.max()):
        raise OmnifieldError("the fitted field has no zero crossing inside its box; train longer")
    spacing = tuple(float(hi[i] - lo[i]) / (resolution - 1) for i in range(3))
    verts, faces, _, _ = marching_cubes(values, level=0.0, spacing=spacing)
    return trimesh.Trimesh(verts + lo.numpy(), faces, process=True)  # outward faces (values grow outside)


def mesh_metrics(pred: trimesh.Trimesh, target: trimesh.Trimesh, n_points: int = 50000, seed: int = 0) -> dict[str, float]:
    """Chamfer distance (absolute, and relative to the target's bounding-box diagonal), normal consistency
    and volume IoU of ``pred`` against ``target``."""
    pts_p, face_p = trimesh.sample.sample_surface(pred, n_points, seed=seed)
    pts_t, face_t = trimesh.sample.sample_surface(target, n_points, seed=seed + 1)
    nrm_p, nrm_t = pred.face_normals[face_p], target.face_normals[face_t]
    d_pt, i_pt = cKDTree(pts_t).query(pts_p)
    d_tp, i_tp = cKDTree(pts_p).query(pts_t)
    chamfer = 0.5 * (d_pt.mean() + d_tp.mean())
    normal = 0.5 * (np.abs((nrm_p * nrm_t[i_pt]).sum(-1)).mean() + np.abs((nrm_t * nrm_p[i_tp]).sum(-1)).mean())
    lo, hi = target.bounds
    rng = np.random.default_rng(seed)
    probe = lo + rng.random((200000, 3)) * (hi - lo)
    in_p, in_t = inside_mesh(pred, probe), inside_mesh(target, probe)
    iou = (in_p & in_t).sum() / max((in_p | in_t).sum(), 1)
    diag = float(np.linalg.norm(hi - lo))
    return {"chamfer": float(chamfer), "chamfer_rel": float(chamfer / diag), "normal_consistency": float(normal), "iou": float(iou)}
