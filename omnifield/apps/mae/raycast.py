"""Ground-truth images of a procedural scene by exact ray-primitive intersection, written in Blender format.

All rays are intersected with all primitives at once (``[R, M]`` tensors):
slab test for oriented boxes, a quadratic for spheres, a quadratic plus two cap
planes for upright cylinders. Shading is Lambertian with a fixed light plus an
ambient term; missed rays are transparent (alpha 0), as in the NeRF synthetic
data, so trainers composite them on white.

Example::

    write_blender_scene(generate_scene(0), "scenes/room0", n_train=60, n_test=10, size=128)
    # -> transforms_train.json, transforms_test.json, train/r_*.png, test/r_*.png, scene.json
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from omnifield.apps.mae.scene import Scene, rotate_z, save_scene_json
from omnifield.errors import OmnifieldError
from omnifield.io.atomic import atomic_path, write_text_atomic
from omnifield.renderers.cameras import look_at

LIGHT_DIR = (0.35, 0.5, 0.79)
AMBIENT = 0.4
_EPS = 1e-6


def _intersect_boxes(o: torch.Tensor, d: torch.Tensor, half: torch.Tensor):
    """Slab test in local frames. ``o, d [R, M, 3]``, ``half [M, 3]`` -> (t [R, M], normal [R, M, 3])."""
    d_safe = torch.where(d.abs() < _EPS, torch.full_like(d, _EPS), d)
    t0, t1 = (-half - o) / d_safe, (half - o) / d_safe
    t_lo, t_hi = torch.minimum(t0, t1), torch.maximum(t0, t1)
    t_near, axis = t_lo.max(dim=-1)
    t_far = t_hi.min(dim=-1).values
    hit = (t_near <= t_far) & (t_near > _EPS)
    normal = -torch.sign(d_safe) * torch.nn.functional.one_hot(axis, 3).to(d.dtype)
    return torch.where(hit, t_near, torch.full_like(t_near, math.inf)), normal


def _intersect_spheres(o: torch.Tensor, d: torch.Tensor, radius: torch.Tensor):
    """Unit ``d``. ``o, d [R, M, 3]``, ``radius [M]`` -> (t [R, M], normal [R, M, 3])."""
    b = (o * d).sum(-1)
    disc = b**2 - ((o * o).sum(-1) - radius**2)
    t = -b - disc.clamp_min(0).sqrt()
    hit = (disc >= 0) & (t > _EPS)
    normal = (o + t[..., None] * d) / radius[:, None]
    return torch.where(hit, t, torch.full_like(t, math.inf)), normal


def _intersect_cylinders(o: torch.Tensor, d: torch.Tensor, radius: torch.Tensor, half_h: torch.Tensor):
    """Upright cylinders: side quadratic and the cap facing the ray. -> (t [R, M], normal [R, M, 3])."""
    a = d[..., 0] ** 2 + d[..., 1] ** 2
    b = o[..., 0] * d[..., 0] + o[..., 1] * d[..., 1]
    c = o[..., 0] ** 2 + o[..., 1] ** 2 - radius**2
    disc = b**2 - a * c
    t_side = (-b - disc.clamp_min(0).sqrt()) / a.clamp_min(_EPS)
    z_side = o[..., 2] + t_side * d[..., 2]
    side_hit = (disc >= 0) & (a > _EPS) & (z_side.abs() <= half_h) & (t_side > _EPS)
    dz = torch.where(d[..., 2].abs() < _EPS, torch.full_like(d[..., 2], _EPS), d[..., 2])
    cap_z = -torch.sign(dz) * half_h
    t_cap = (cap_z - o[..., 2]) / dz
    p_cap = o + t_cap[..., None] * d
    cap_hit = (p_cap[..., 0] ** 2 + p_cap[..., 1] ** 2 <= radius**2) & (t_cap > _EPS)
    t_side = torch.where(side_hit, t_side, torch.full_like(t_side, math.inf))
    t_cap = torch.where(cap_hit, t_cap, torch.full_like(t_cap, math.inf))
    p_side = o + t_side.clamp_max(1e6)[..., None] * d
    n_side = torch.stack([p_side[..., 0], p_side[..., 1], torch.zeros_like(a)], -1) / radius[:, None]
    n_cap = torch.stack([torch.zeros_like(a), torch.zeros_like(a), -torch.sign(dz)], -1)
    use_cap = t_cap < t_side
    return torch.minimum(t_side, t_cap), torch.where(use_cap[..., None], n_cap, n_side)


def intersect_scene(scene: Scene, origins: torch.Tensor, dirs: torch.Tensor):
    """First hit of rays ``origins, dirs [R, 3]`` (unit dirs) with the scene.

    Returns ``t [R]`` (inf on a miss), world ``normal [R, 3]`` and primitive index ``[R]`` (-1 on a miss).
    """
    c = torch.as_tensor(scene.centers, dtype=dirs.dtype)
    yaw = torch.as_tensor(scene.yaws, dtype=dirs.dtype)
    half = torch.as_tensor(scene.sizes, dtype=dirs.dtype) / 2
    kinds = torch.as_tensor(scene.kinds)
    m = scene.n_primitives
    o = rotate_z(origins[:, None, :] - c, -yaw)
    d = rotate_z(dirs[:, None, :].expand(-1, m, -1), -yaw)
    t_box, n_box = _intersect_boxes(o, d, half)
    t_sph, n_sph = _intersect_spheres(o, d, half[:, 0])
    t_cyl, n_cyl = _intersect_cylinders(o, d, half[:, 0], half[:, 2])
    t = torch.where(kinds == 0, t_box, torch.where(kinds == 1, t_cyl, t_sph))
    normal = torch.where((kinds == 0)[:, None], n_box, torch.where((kinds == 1)[:, None], n_cyl, n_sph))
    t_min, prim = t.min(dim=1)
    hit = torch.isfinite(t_min)
    n_local = normal[torch.arange(len(prim)), prim]
    n_world = rotate_z(n_local[:, None, :], yaw[prim][:, None])[:, 0]
    return t_min, n_world, torch.where(hit, prim, torch.full_like(prim, -1))


def camera_rays(c2w: np.ndarray, size: int, camera_angle_x: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre rays of a square pinhole camera: ``origins, dirs [size*size, 3]`` (row-major pixels)."""
    focal = 0.5 * size / math.tan(0.5 * camera_angle_x)
    j, i = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij")
    cam = torch.stack([(i + 0.5 - size / 2) / focal, -(j + 0.5 - size / 2) / focal, -torch.ones_like(i)], -1)
    rot = torch.as_tensor(c2w[:3, :3])
    dirs = cam.reshape(-1, 3) @ rot.T
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = torch.as_tensor(c2w[:3, 3]).expand_as(dirs)
    return origins.float(), dirs.float()


def render_view(scene: Scene, c2w: np.ndarray, size: int, camera_angle_x: float) -> np.ndarray:
    """RGBA image ``[size, size, 4]`` float in [0, 1] (alpha 0 where the ray misses)."""
    origins, dirs = camera_rays(c2w, size, camera_angle_x)
    _, normal, prim = intersect_scene(scene, origins, dirs)
    hit = prim >= 0
    normal = torch.where((normal * dirs).sum(-1, keepdim=True) > 0, -normal, normal)
    light = torch.tensor(LIGHT_DIR) / torch.tensor(LIGHT_DIR).norm()
    shade = AMBIENT + (1 - AMBIENT) * (normal @ light).clamp_min(0)
    albedo = torch.as_tensor(scene.colors)[prim.clamp_min(0)]
    rgb = torch.where(hit[:, None], albedo * shade[:, None], torch.zeros(1, 3))
    rgba = torch.cat([rgb, hit[:, None].float()], dim=1)
    return rgba.reshape(size, size, 4).numpy()


def orbit_poses(n: int, radius: float, offset: float) -> list[np.ndarray]:
    """``n`` cameras on the upper hemisphere (golden-angle azimuths, elevations 20-65 deg) aimed at the room."""
    target = np.array([0.0, 0.0, -0.6])
    k = np.arange(n) + offset
    azimuth = k * math.pi * (3 - math.sqrt(5))
    elevation = np.deg2rad(20 + 45 * ((k * 0.618034) % 1.0))
    eyes = np.stack([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation), np.sin(elevation)], 1)
    as64 = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return list(look_at(as64(radius * eyes + target), as64(target), as64([0.0, 0.0, 1.0])).numpy())


def write_blender_scene(
    scene: Scene, out_dir, n_train: int = 60, n_test: int = 10, size: int = 128, camera_angle_x: float = 0.6911
) -> Path:
    """Render train/test views and write ``transforms_{train,test}.json`` + PNGs + ``scene.json``."""
    if n_train < 1 or n_test < 1 or size < 8:
        raise OmnifieldError(f"need n_train >= 1, n_test >= 1, size >= 8 (got {n_train}, {n_test}, {size})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = {"train": orbit_poses(n_train, 4.0, 0.0), "test": orbit_poses(n_test, 4.0, 0.5)}
    for split, poses in splits.items():
        (out / split).mkdir(exist_ok=True)
        frames = []
        for i, c2w in enumerate(poses):
            image = render_view(scene, c2w, size, camera_angle_x)
            with atomic_path(out / split / f"r_{i}.png") as tmp:
                iio.imwrite(tmp, (image * 255 + 0.5).astype(np.uint8), extension=".png")
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()})
        meta = {"camera_angle_x": camera_angle_x, "frames": frames}
        write_text_atomic(out / f"transforms_{split}.json", json.dumps(meta, indent=1))
    save_scene_json(scene, out / "scene.json")
    return out
