"""A* shortest paths on a 3-D occupancy grid (26-connected, Euclidean step costs and heuristic)."""

from __future__ import annotations

import heapq
import itertools
import math

import numpy as np

from omnifield.errors import OmnifieldError

_OFFSETS = np.array([o for o in itertools.product((-1, 0, 1), repeat=3) if any(o)], dtype=np.int64)  # [26, 3]


def astar(free: np.ndarray, start: tuple, goal: tuple, voxel_size=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Cells ``[L, 3]`` of a shortest 26-connected path through ``free [X, Y, Z]`` from ``start`` to ``goal``.

    Step costs are the Euclidean lengths of the moves (``voxel_size`` per axis); the heuristic is the
    straight-line distance, which is consistent, so the path is optimal. Raises :class:`OmnifieldError`
    when the start or goal is blocked or no path exists.
    """
    free = np.asarray(free, bool)
    shape = np.asarray(free.shape)
    start, goal = tuple(int(v) for v in start), tuple(int(v) for v in goal)
    for name, cell in (("start", start), ("goal", goal)):
        if not (np.all(np.asarray(cell) >= 0) and np.all(np.asarray(cell) < shape)) or not free[cell]:
            raise OmnifieldError(f"A*: the {name} cell {cell} is outside the grid or inside an obstacle")
    voxel = np.asarray(voxel_size, float)
    step_cost = np.linalg.norm(_OFFSETS * voxel, axis=1).tolist()
    offsets = _OFFSETS.tolist()
    vx, vy, vz = voxel.tolist()
    flat_free = free.ravel()
    strides = (free.shape[1] * free.shape[2], free.shape[2], 1)

    def heuristic(c):
        return math.sqrt(((c[0] - goal[0]) * vx) ** 2 + ((c[1] - goal[1]) * vy) ** 2 + ((c[2] - goal[2]) * vz) ** 2)

    best = {start: 0.0}
    parent = {start: None}
    frontier = [(heuristic(start), 0.0, start)]
    while frontier:
        _, g, cell = heapq.heappop(frontier)
        if cell == goal:
            break
        if g > best[cell]:
            continue
        for (dx, dy, dz), cost in zip(offsets, step_cost):
            n = (cell[0] + dx, cell[1] + dy, cell[2] + dz)
            if not (0 <= n[0] < shape[0] and 0 <= n[1] < shape[1] and 0 <= n[2] < shape[2]):
                continue
            if not flat_free[n[0] * strides[0] + n[1] * strides[1] + n[2]]:
                continue
            g_new = g + cost
            if g_new < best.get(n, np.inf):
                best[n] = g_new
                parent[n] = cell
                heapq.heappush(frontier, (g_new + heuristic(n), g_new, n))
    if goal not in parent:
        raise OmnifieldError(f"A*: no collision-free path from cell {start} to cell {goal}")
    path = [goal]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])
    return np.asarray(path[::-1], dtype=np.int64)


def path_length(points: np.ndarray) -> float:
    """Total length of a polyline ``[L, 3]``."""
    return float(np.linalg.norm(np.diff(np.asarray(points, float), axis=0), axis=1).sum())


def resample_polyline(points: np.ndarray, n: int) -> np.ndarray:
    """``n`` points ``[n, 3]`` evenly spaced by arc length along the polyline ``points [L, 3]``."""
    points = np.asarray(points, float)
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] == 0:
        return np.repeat(points[:1], n, axis=0)
    targets = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(targets, s, points[:, k]) for k in range(3)], axis=-1)
