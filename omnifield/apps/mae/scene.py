"""Seeded procedural indoor scenes: a floor, two walls and objects with colours, classes and oriented boxes.

A scene is a list of primitives stored as arrays (so every query is vectorised
over points x primitives). Each primitive has a kind (box, upright cylinder,
sphere), a centre, full extents ``size`` (its oriented bounding box), a yaw
about +z, an albedo and a semantic class. Everything lies inside the cube
``[-1.5, 1.5]^3`` (z up), the default box of a :class:`RadianceField`.

Example::

    scene = generate_scene(seed=3)
    labels = scene.labels_at(torch.rand(1000, 3) * 3 - 1.5)   # [1000] class ids
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from omnifield.errors import OmnifieldError
from omnifield.io.atomic import write_text_atomic

CLASS_NAMES = ("empty", "floor", "wall", "cabinet", "bed", "lamp", "ball")
KINDS = ("box", "cylinder", "sphere")
SCENE_AABB = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
FLOOR_TOP = -0.95
SOLID_DENSITY = 500.0  # density inside a primitive; alpha = 1 - exp(-500 * 0.01) ~ 0.993


@dataclass
class Scene:
    """Primitives as arrays: ``kinds [M]`` (index into KINDS), ``centers [M, 3]``, ``sizes [M, 3]``
    (full extents of the oriented box), ``yaws [M]``, ``colors [M, 3]`` in [0, 1], ``labels [M]``."""

    kinds: np.ndarray
    centers: np.ndarray
    sizes: np.ndarray
    yaws: np.ndarray
    colors: np.ndarray
    labels: np.ndarray
    seed: int = 0

    @property
    def n_primitives(self) -> int:
        return int(self.kinds.shape[0])

    def oriented_boxes(self) -> np.ndarray:
        """``[M, 7]`` rows (cx, cy, cz, sx, sy, sz, yaw), one per primitive."""
        return np.concatenate([self.centers, self.sizes, self.yaws[:, None]], axis=1).astype(np.float32)

    def inside(self, x: torch.Tensor, index: int | None = None) -> torch.Tensor:
        """``[N, 3] -> [N, M]`` bool: point inside primitive (``[N, 1]`` for one primitive ``index``)."""
        sel = slice(None) if index is None else slice(index, index + 1)
        c = torch.as_tensor(self.centers[sel], dtype=x.dtype, device=x.device)
        yaw = torch.as_tensor(self.yaws[sel], dtype=x.dtype, device=x.device)
        local = rotate_z(x[:, None, :] - c, -yaw)
        half = torch.as_tensor(self.sizes[sel], dtype=x.dtype, device=x.device) / 2
        kinds = torch.as_tensor(self.kinds[sel], device=x.device)
        in_box = (local.abs() <= half).all(dim=-1)
        radial = (local[..., 0] ** 2 + local[..., 1] ** 2) <= half[..., 0] ** 2
        in_cylinder = radial & (local[..., 2].abs() <= half[..., 2])
        in_sphere = (local**2).sum(-1) <= half[..., 0] ** 2
        return torch.where(kinds == 0, in_box, torch.where(kinds == 1, in_cylinder, in_sphere))

    def owner(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3] -> [N]`` index of the primitive containing each point (last one wins), -1 outside all."""
        inside = self.inside(x)
        order = torch.arange(1, self.n_primitives + 1, device=x.device)
        return (inside * order).max(dim=1).values - 1

    def owner_on_lattice(self, lo, step, shape) -> torch.Tensor:
        """:meth:`owner` at the points ``lo + (i + 0.5) * step`` of a regular lattice ``shape`` -> ``[*shape]``.

        Each primitive is only tested on the lattice points inside its axis-aligned bounds (same answer
        as :meth:`owner`, a small fraction of the work).
        """
        lo, step = np.asarray(lo, np.float64), np.asarray(step, np.float64)
        out = torch.full(tuple(shape), -1, dtype=torch.int64)
        c, s = np.abs(np.cos(self.yaws)), np.abs(np.sin(self.yaws))
        reach = np.stack([c * self.sizes[:, 0] + s * self.sizes[:, 1], s * self.sizes[:, 0] + c * self.sizes[:, 1],
                          self.sizes[:, 2]], 1) / 2
        for m in range(self.n_primitives):
            first = np.clip(np.floor((self.centers[m] - reach[m] - lo) / step - 0.5), 0, shape).astype(int)
            last = np.clip(np.ceil((self.centers[m] + reach[m] - lo) / step - 0.5) + 1, 0, shape).astype(int)
            if np.any(last <= first):
                continue
            axes = [torch.arange(a, b, dtype=torch.float64) for a, b in zip(first, last)]
            idx = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
            points = (torch.from_numpy(lo) + (idx + 0.5) * torch.from_numpy(step)).float()
            hit = self.inside(points.reshape(-1, 3), m).reshape(points.shape[:3])
            block = out[first[0] : last[0], first[1] : last[1], first[2] : last[2]]
            block[hit] = m
        return out

    def labels_at(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3] -> [N]`` int64 semantic class (0 = empty)."""
        idx = self.owner(x)
        table = torch.as_tensor(np.concatenate([[0], self.labels]), dtype=torch.int64, device=x.device)
        return table[idx + 1]

    def albedo_at(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3] -> [N, 3]`` colour of the containing primitive (0 outside)."""
        idx = self.owner(x)
        colors = torch.as_tensor(self.colors, dtype=x.dtype, device=x.device)
        table = torch.cat([torch.zeros(1, 3, dtype=x.dtype, device=x.device), colors])
        return table[idx + 1]

    def to_json(self) -> dict:
        """Plain JSON description (primitives with their kind, class name, box and colour)."""
        return {
            "seed": self.seed,
            "aabb": list(SCENE_AABB),
            "primitives": [
                {
                    "kind": KINDS[int(k)],
                    "class": CLASS_NAMES[int(lab)],
                    "center": c.tolist(),
                    "size": s.tolist(),
                    "yaw": float(y),
                    "color": col.tolist(),
                }
                for k, c, s, y, col, lab in zip(
                    self.kinds, self.centers, self.sizes, self.yaws, self.colors, self.labels
                )
            ],
        }


def rotate_z(v: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate vectors ``[..., M, 3]`` about +z by ``angle [M]`` radians."""
    c, s = torch.cos(angle), torch.sin(angle)
    x, y = v[..., 0], v[..., 1]
    return torch.stack([c * x - s * y, s * x + c * y, v[..., 2]], dim=-1)


class SceneField(nn.Module):
    """The analytic scene as a radiance field: ``density(x [..., 3]) -> [...]`` (SOLID_DENSITY inside a
    primitive, 0 outside) and ``forward(x, d) -> (rgb [..., 3], sigma [...])`` (albedo, view-independent)."""

    def __init__(self, scene: Scene):
        super().__init__()
        self.scene = scene

    def density(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, 3)
        sigma = (self.scene.owner(flat) >= 0).to(x.dtype) * SOLID_DENSITY
        return sigma.reshape(x.shape[:-1])

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.reshape(-1, 3)
        rgb = self.scene.albedo_at(flat).reshape(*x.shape[:-1], 3)
        return rgb, self.density(x)


def _object_size(kind_name: str, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """(kind index, full extents [3]) of an object of class ``kind_name``."""
    if kind_name == "cabinet":
        return 0, np.array([rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.6), rng.uniform(0.7, 1.4)])
    if kind_name == "bed":
        return 0, np.array([rng.uniform(0.8, 1.2), rng.uniform(0.5, 0.8), rng.uniform(0.2, 0.4)])
    if kind_name == "lamp":
        r = rng.uniform(0.08, 0.2)
        return 1, np.array([2 * r, 2 * r, rng.uniform(0.4, 1.2)])
    r = rng.uniform(0.15, 0.35)
    return 2, np.array([2 * r, 2 * r, 2 * r])


def generate_scene(seed: int, min_objects: int = 3, max_objects: int = 7) -> Scene:
    """A reproducible room: floor, two walls and ``min_objects..max_objects`` non-overlapping objects.

    Object footprints are placed by rejection sampling of bounding circles on the floor.
    """
    if seed < 0:
        raise OmnifieldError(f"scene seed must be >= 0, got {seed}")
    if not 1 <= min_objects <= max_objects:
        raise OmnifieldError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    rng = np.random.default_rng(seed)
    lx, ly = rng.uniform(2.2, 2.8, size=2)
    wall_h = rng.uniform(0.5, 1.0)
    thick = 0.08
    kinds = [0, 0, 0]
    centers = [
        [0.0, 0.0, FLOOR_TOP - thick / 2],
        [-lx / 2 + thick / 2, 0.0, FLOOR_TOP + wall_h / 2],
        [0.0, -ly / 2 + thick / 2, FLOOR_TOP + wall_h / 2],
    ]
    sizes = [[lx, ly, thick], [thick, ly, wall_h], [lx, thick, wall_h]]
    yaws = [0.0, 0.0, 0.0]
    colors = [rng.uniform(0.3, 0.7, 3), rng.uniform(0.5, 0.9, 3), rng.uniform(0.5, 0.9, 3)]
    labels = [CLASS_NAMES.index("floor"), CLASS_NAMES.index("wall"), CLASS_NAMES.index("wall")]
    placed: list[tuple[float, float, float]] = []  # (x, y, radius) footprints
    n_objects = int(rng.integers(min_objects, max_objects + 1))
    object_classes = ("cabinet", "bed", "lamp", "ball")
    for _ in range(n_objects):
        name = object_classes[int(rng.integers(len(object_classes)))]
        kind, size = _object_size(name, rng)
        radius = 0.5 * float(np.hypot(size[0], size[1]))
        for _attempt in range(50):
            x = rng.uniform(-lx / 2 + thick + radius, lx / 2 - radius)
            y = rng.uniform(-ly / 2 + thick + radius, ly / 2 - radius)
            if all(np.hypot(x - px, y - py) > radius + pr + 0.05 for px, py, pr in placed):
                break
        else:
            continue
        placed.append((x, y, radius))
        kinds.append(kind)
        centers.append([x, y, FLOOR_TOP + size[2] / 2])
        sizes.append(size.tolist())
        yaws.append(float(rng.uniform(-np.pi, np.pi)) if kind == 0 else 0.0)
        colors.append(rng.uniform(0.05, 0.95, 3))
        labels.append(CLASS_NAMES.index(name))
    return Scene(
        kinds=np.asarray(kinds, dtype=np.int64),
        centers=np.asarray(centers, dtype=np.float32),
        sizes=np.asarray(sizes, dtype=np.float32),
        yaws=np.asarray(yaws, dtype=np.float32),
        colors=np.asarray(colors, dtype=np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        seed=seed,
    )


def save_scene_json(scene: Scene, path) -> None:
    """Write the scene description (primitives, classes, boxes) as JSON, atomically."""
    write_text_atomic(path, json.dumps(scene.to_json(), indent=1))


def scene_from_json(path) -> Scene:
    """Read a scene written by :func:`save_scene_json`; :class:`OmnifieldError` if malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        prims = data["primitives"]
        return Scene(
            kinds=np.asarray([KINDS.index(p["kind"]) for p in prims], dtype=np.int64),
            centers=np.asarray([p["center"] for p in prims], dtype=np.float32).reshape(-1, 3),
            sizes=np.asarray([p["size"] for p in prims], dtype=np.float32).reshape(-1, 3),
            yaws=np.asarray([p["yaw"] for p in prims], dtype=np.float32),
            colors=np.asarray([p["color"] for p in prims], dtype=np.float32).reshape(-1, 3),
            labels=np.asarray([CLASS_NAMES.index(p["class"]) for p in prims], dtype=np.int64),
            seed=int(data.get("seed", 0)),
        )
    except (OSError, KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise OmnifieldError(f"{path}: not a readable scene description ({exc})") from None
