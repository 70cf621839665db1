"""Trajectory planning through a field's density (Adamkiewicz et al. 2022, "NeRF-Nav").

The trajectory is ``T`` waypoints of position and yaw every ``dt`` seconds; differential flatness turns
them into rotations and controls. Cost::

    collision = sum_k dt |v_k| mean_b sigma(p_k + R_k b)       (density crossed by the robot body points b,
                                                                 also at points between waypoints)
    effort    = sum_k dt ((f_k / m)^2 + |w_{k+1/2}|^2)          (thrust and body-rate effort; thrust over the
                                                                 inner samples: the held ends' one-sided
                                                                 stencils would reward a dive at the start)
    cost      = collision_weight * collision + effort_weight * effort

It starts from an A* path on a coarse occupancy grid of the field (inflated by the robot's clearance),
is optimised with Adam (the first two and last two waypoints are held: they fix start position and
velocity, and a stop at the goal), and is re-optimised from the current state estimate while flying
(receding horizon, :meth:`TrajectoryPlanner.replan`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from omnifield.apps.nav.astar import astar, path_length, resample_polyline
from omnifield.apps.nav.flatness import FlatState, QuadrotorParams, flat_to_state
from omnifield.apps.nav.grid import GridSpec, occupancy_from_density, sample_density, signed_distance
from omnifield.errors import OmnifieldError
from omnifield.fields.protocol import RadianceFieldLike


@dataclass
class PlannerConfig:
    """Planner settings: discretisation, optimiser, cost weights, robot body, A* grid."""

    n_waypoints: int = 40
    speed: float = 0.5  # m/s along the A* path: sets the duration of the plan
    steps: int = 250  # Adam steps of a full plan
    replan_steps: int = 40  # Adam steps of a receding-horizon replan
    lr: float = 0.01
    collision_weight: float = 1.0
    effort_weight: float = 0.01
    body_half_extent: tuple = (0.12, 0.12, 0.04)  # m, box of body points around the centre
    body_samples: tuple = (3, 3, 2)
    collision_substeps: int = 3  # body positions checked per waypoint interval (1 = waypoints only)
    voxel_size: float = 0.1  # A* grid cell size
    occupancy_threshold: float = 1.0  # density above which an A* cell is occupied
    clearance: float = 0.2  # A* keeps the path at least this far from occupied cells


@dataclass
class Plan:
    """An optimised trajectory and what it costs."""

    waypoints: torch.Tensor  # [T, 3]
    yaw: torch.Tensor  # [T]
    dt: float
    state: FlatState
    collision: float
    effort: float
    astar_path: np.ndarray  # [L, 3] the initial A* polyline (world)
    seconds: float = 0.0
    history: list = field(default_factory=list)  # total cost per Adam step


def body_points(half_extent: tuple, samples: tuple) -> torch.Tensor:
    """Points ``[M, 3]`` on a regular lattice filling the body box (body frame)."""
    axes = [torch.linspace(-h, h, n) if n > 1 else torch.zeros(1) for h, n in zip(half_extent, samples)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def heading_yaw(waypoints: torch.Tensor) -> torch.Tensor:
    """Unwrapped yaw ``[T]`` facing along the direction of travel of ``waypoints [T, 3]``."""
    d = torch.gradient(waypoints, dim=0)[0]
    yaw = torch.atan2(d[:, 1], d[:, 0])
    return torch.from_numpy(np.unwrap(yaw.detach().numpy())).to(waypoints)


class TrajectoryPlanner:
    """Plans collision-free, low-effort quadrotor trajectories through ``field.density`` inside ``bounds``."""

    def __init__(self, field: RadianceFieldLike, bounds: tuple, cfg: PlannerConfig | None = None, quad: QuadrotorParams | None = None):
        self.field = field
        self.cfg = cfg or PlannerConfig()
        self.quad = quad or QuadrotorParams()
        if self.cfg.n_waypoints < 6:
            raise OmnifieldError(f"planner: n_waypoints must be at least 6, got {self.cfg.n_waypoints}")
        self.spec = GridSpec.with_voxel_size(tuple(float(b) for b in bounds), self.cfg.voxel_size)
        self.density_grid = sample_density(field, self.spec)
        self.occupied = occupancy_from_density(self.density_grid, self.cfg.occupancy_threshold)
        self.esdf = signed_distance(self.occupied, self.spec.voxel_size)
        self.body = body_points(self.cfg.body_half_extent, self.cfg.body_samples)

    # -- initialisation --------------------------------------------------------------------------------

    def astar_path(self, start: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """A* polyline ``[L, 3]``: start, free cell centres (clearance kept), goal."""
        free = self.esdf > self.cfg.clearance
        cells = [self.spec.to_index(np.asarray(p, float)) for p in (start, goal)]
        for name, c in zip(("start", "goal"), cells):
            if not free[tuple(c)]:
                raise OmnifieldError(
                    f"planner: the {name} point is within {self.cfg.clearance} m of an obstacle (or outside the bounds)"
                )
        path = self.spec.to_world(astar(free, tuple(cells[0]), tuple(cells[1]), self.spec.voxel_size))
        return np.concatenate([np.asarray(start, float)[None], path[1:-1], np.asarray(goal, float)[None]])

    # -- cost -------------------------------------------------------------------------------------------

    def costs(self, waypoints: torch.Tensor, yaw: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor, FlatState]:
        """``(collision, effort, state)`` of a trajectory ``waypoints [T, 3]``, ``yaw [T]`` (differentiable)."""
        state = flat_to_state(waypoints, yaw, dt, self.quad)
        n_sub = max(1, self.cfg.collision_substeps)
        frac = torch.arange(n_sub, dtype=waypoints.dtype) / n_sub  # [S]
        centres = waypoints[:-1, None] + frac[:, None] * (waypoints[1:] - waypoints[:-1])[:, None]  # [T-1, S, 3]
        centres = torch.cat([centres.reshape(-1, 3), waypoints[-1:]])  # [(T-1) S + 1, 3]
        rotations = torch.cat([state.rotation[:-1].repeat_interleave(n_sub, 0), state.rotation[-1:]])
        speeds = torch.cat([state.velocity[:-1].norm(dim=-1).repeat_interleave(n_sub), state.velocity[-1:].norm(dim=-1)])
        pts = centres[:, None, :] + (rotations[:, None] * self.body.to(waypoints)[None, :, None, :]).sum(-1)
        density = self.field.density(pts).mean(dim=-1)  # [(T-1) S + 1]
        collision = (density * speeds).sum() * dt / n_sub
        effort = ((state.thrust[1:-1] / self.quad.mass) ** 2).sum() * dt + (state.body_rate_half**2).sum() * dt
        return collision, effort, state

    # -- optimisation -----------------------------------------------------------------------------------

    def optimise(self, waypoints: torch.Tensor, yaw: torch.Tensor, dt: float, steps: int, astar_path: np.ndarray) -> Plan:
        """Adam on the free waypoints (all but the first two and last two) and yaws."""
        tic = time.perf_counter()
        cfg = self.cfg
        waypoints, yaw = waypoints.detach().float(), yaw.detach().float()
        free_p = waypoints[2:-2].clone().requires_grad_(True)
        free_yaw = yaw[2:-2].clone().requires_grad_(True)
        opt = torch.optim.Adam([free_p, free_yaw], lr=cfg.lr)
        history = []

        def assemble():
            return (torch.cat([waypoints[:2], free_p, waypoints[-2:]]), torch.cat([yaw[:2], free_yaw, yaw[-2:]]))

        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            collision, effort, _ = self.costs(*assemble(), dt)
            total = cfg.collision_weight * collision + cfg.effort_weight * effort
            total.backward()
            opt.step()
            history.append(total.item())
        with torch.no_grad():
            p, y = assemble()
            collision, effort, state = self.costs(p, y, dt)
        return Plan(p, y, dt, state, float(collision), float(effort), astar_path, time.perf_counter() - tic, history)

    def plan(self, start, goal, start_velocity=(0.0, 0.0, 0.0), steps: int | None = None) -> Plan:
        """Plan from ``start [3]`` (moving at ``start_velocity [3]``) to a stop at ``goal [3]``."""
        tic = time.perf_counter()
        start, goal = np.asarray(start, float), np.asarray(goal, float)
        path = self.astar_path(start, goal)
        n = self.cfg.n_waypoints
        duration = max(path_length(path) / self.cfg.speed, 1.0)
        dt = duration / (n - 1)
        init = torch.from_numpy(resample_polyline(path, n - 2)).float()
        # hold the start velocity (p1 = p0 + v dt) and a stop at the goal (two identical last points)
        p0 = init[0]
        p1 = p0 + torch.as_tensor(start_velocity, dtype=torch.float32) * dt
        waypoints = torch.cat([p0[None], p1[None], init[1:-1], init[-1:].expand(2, 3)])
        plan = self.optimise(waypoints, heading_yaw(waypoints), dt, steps or self.cfg.steps, path)
        plan.seconds = time.perf_counter() - tic
        return plan

    def replan(self, plan: Plan, step: int, position, velocity, yaw: float | None = None) -> Plan:
        """Receding horizon: re-optimise the rest of ``plan`` after ``step`` steps from the estimated state.

        The remaining waypoints (padded with the goal to at least 6) warm-start the optimiser; the first
        two are set from the estimated ``position [3]`` and ``velocity [3]``.
        """
        rest = plan.waypoints[step:]
        rest_yaw = plan.yaw[step:]
        if rest.shape[0] < 6:
            pad = 6 - rest.shape[0]
            rest = torch.cat([rest, plan.waypoints[-1:].expand(pad, 3)])
            rest_yaw = torch.cat([rest_yaw, plan.yaw[-1:].expand(pad)])
        p = torch.as_tensor(position, dtype=torch.float32)
        v = torch.as_tensor(velocity, dtype=torch.float32)
        waypoints = torch.cat([p[None], (p + v * plan.dt)[None], rest[2:]])
        yaws = rest_yaw.clone()
        if yaw is not None:
            yaws[:2] = yaw
        return self.optimise(waypoints, yaws, plan.dt, self.cfg.replan_steps, plan.astar_path)
