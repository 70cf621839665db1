"""Closed-loop flight: plan through the learned field, fly with noisy dynamics in the analytic world,
see through a camera rendered from the world, estimate the state from images, replan (receding horizon).

The world (an :class:`AnalyticScene`) is only used to move the true robot and to render its camera
images; planner and estimator only know the learned ``field``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from omnifield.apps.nav.astar import path_length
from omnifield.apps.nav.estimator import EstimatorConfig, PhotometricEstimator, PinholeCamera
from omnifield.apps.nav.filter import FilterNoise, StateFilter, camera_pose
from omnifield.apps.nav.lie import rotation_angle_deg, so3_exp
from omnifield.apps.nav.planner import PlannerConfig, TrajectoryPlanner
from omnifield.apps.nav.scenes import AnalyticScene
from omnifield.renderers.occupancy import OccupancyGridConfig
from omnifield.renderers.volume import VolumeRenderer, VolumeRendererConfig


@dataclass
class FlightConfig:
    """Start, goal, camera, noise of the true dynamics, and the planner/estimator settings."""

    start: tuple = (-1.6, -1.6, 1.0)
    goal: tuple = (1.6, 1.6, 1.0)
    flight_bounds: tuple = (-2.0, -2.0, 0.0, 2.0, 2.0, 2.0)  # the planner's A* grid (where the robot may fly)
    image_size: tuple = (48, 36)
    fov_deg: float = 80.0
    velocity_noise: float = 0.02  # m/s per step, true dynamics
    attitude_noise: float = 0.01  # rad per step, true dynamics
    initial_error: float = 0.05  # m, error of the first state estimate
    seed: int = 0
    planner: PlannerConfig = field(default_factory=lambda: PlannerConfig(n_waypoints=30))
    estimator: EstimatorConfig = field(default_factory=lambda: EstimatorConfig(n_rays=192, steps=50))
    noise: FilterNoise = field(default_factory=FilterNoise)


@dataclass
class FlightLog:
    """Everything recorded along a flight (positions ``[K, 3]``, rotations ``[K, 3, 3]``, images)."""

    true_positions: list = field(default_factory=list)
    true_rotations: list = field(default_factory=list)
    estimated_positions: list = field(default_factory=list)
    estimated_rotations: list = field(default_factory=list)
    planned_paths: list = field(default_factory=list)
    images: list = field(default_factory=list)
    plan_seconds: list = field(default_factory=list)
    estimate_seconds: list = field(default_factory=list)
    initial_plan: np.ndarray | None = None
    astar_path: np.ndarray | None = None


def renderer_for(scene, aabb, resolution: int = 64, steps_per_diagonal: int = 512) -> VolumeRenderer:
    """An occupancy-sampling volume renderer whose grid is filled from ``scene.density``."""
    renderer = VolumeRenderer(aabb, VolumeRendererConfig(
        n_steps_per_diagonal=steps_per_diagonal, grid=OccupancyGridConfig(resolution=resolution)))
    renderer.update_occupancy(scene, 0)
    return renderer


def fly(world: AnalyticScene, learned, aabb: tuple, cfg: FlightConfig | None = None, progress=None) -> FlightLog:
    """Fly from ``cfg.start`` to ``cfg.goal``; ``progress(step, total)`` is called after each step."""
    cfg = cfg or FlightConfig()
    gen = torch.Generator().manual_seed(cfg.seed)
    planner = TrajectoryPlanner(learned, cfg.flight_bounds, cfg.planner)
    camera = PinholeCamera.from_fov(cfg.image_size[0], cfg.image_size[1], cfg.fov_deg)
    world_renderer = renderer_for(world, aabb, resolution=96, steps_per_diagonal=1024)
    estimator = PhotometricEstimator(learned, renderer_for(learned, aabb), camera, cfg.estimator)
    log = FlightLog()

    plan = planner.plan(cfg.start, cfg.goal)
    log.plan_seconds.append(plan.seconds)
    log.initial_plan, log.astar_path = plan.waypoints.numpy().copy(), plan.astar_path
    quad = planner.quad
    p_true = torch.tensor(cfg.start, dtype=torch.float32)
    v_true = torch.zeros(3)
    r_true = plan.state.rotation[0].clone()
    start_error = torch.randn(3, generator=gen) * cfg.initial_error
    state = StateFilter(p_true + start_error, v_true, r_true, cfg.noise, quad)
    gravity = torch.tensor([0.0, 0.0, quad.gravity])
    n_steps = cfg.planner.n_waypoints - 1
    for step in range(n_steps):
        # command of the current plan's first step (compact-stencil acceleration at sample 1)
        thrust, r_cmd, dt = float(plan.state.thrust[1]), plan.state.rotation[1], plan.dt
        r_true = r_cmd @ so3_exp(torch.randn(3, generator=gen) * cfg.attitude_noise)
        p_true = p_true + v_true * dt
        v_true = v_true + (r_true[:, 2] * thrust / quad.mass - gravity) * dt + torch.randn(3, generator=gen) * cfg.velocity_noise
        image = world_renderer.render_image(world, camera.cameras(camera_pose(p_true, r_true)[None]), 0)["rgb"]
        state.predict(thrust, r_cmd, dt)
        result = state.update(image, estimator, seed=cfg.seed + step)
        log.estimate_seconds.append(result.seconds)
        plan = planner.replan(plan, 1, state.position, state.velocity)
        log.plan_seconds.append(plan.seconds)
        log.true_positions.append(p_true.numpy().copy())
        log.true_rotations.append(r_true.numpy().copy())
        log.estimated_positions.append(state.position.numpy().copy())
        log.estimated_rotations.append(state.rotation.numpy().copy())
        log.planned_paths.append(plan.waypoints.numpy().copy())
        log.images.append((image.clamp(0, 1).numpy() * 255).astype(np.uint8))
        if progress is not None:
            progress(step + 1, n_steps)
    return log


def flight_metrics(log: FlightLog, world: AnalyticScene, goal) -> dict:
    """Goal error, clearance and density crossed in the world, path lengths, pose errors, timings."""
    true = np.asarray(log.true_positions)
    est = np.asarray(log.estimated_positions)
    pts = torch.from_numpy(true).float()
    with torch.no_grad():
        clearance = world.sdf(pts).numpy()
        seg = np.linalg.norm(np.diff(true, axis=0), axis=1)
        density = world.density(pts).numpy()
    pos_err = np.linalg.norm(true - est, axis=1) * 100
    rot_err = rotation_angle_deg(torch.from_numpy(np.asarray(log.true_rotations)),
                                 torch.from_numpy(np.asarray(log.estimated_rotations))).numpy()
    return {
        "steps": int(len(true)),
        "goal_error_m": float(np.linalg.norm(true[-1] - np.asarray(goal))),
        "min_clearance_m": float(clearance.min()),
        "collided": bool(clearance.min() < 0),
        "density_crossed": float((0.5 * (density[1:] + density[:-1]) * seg).sum()),
        "flown_length_m": path_length(true),
        "planned_length_m": path_length(log.initial_plan),
        "astar_length_m": path_length(log.astar_path),
        "pose_error_cm_mean": float(pos_err.mean()),
        "pose_error_cm_max": float(pos_err.max()),
        "rotation_error_deg_mean": float(rot_err.mean()),
        "rotation_error_deg_max": float(rot_err.max()),
        "seconds_first_plan": float(log.plan_seconds[0]),
        "seconds_per_replan": float(np.mean(log.plan_seconds[1:])) if len(log.plan_seconds) > 1 else 0.0,
        "seconds_per_estimate": float(np.mean(log.estimate_seconds)),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
