"""Navigation benchmark: planning through density and photometric pose estimation, on 2 CPU threads.

Planning (procedural pillar room, analytic density): the optimised trajectory against its baselines in
the same run, the straight line and the A* initialisation: minimum clearance of the robot body
(signed distance of the body points to the obstacles), density crossed (line integral of the mean body
density), path length, control effort and time.

Estimation: camera poses perturbed by 3-6 cm / 3-6 degrees (the size of a filter's prediction error)
and by 10-20 cm / 10-20 degrees, recovered by photometric alignment against the room's rendering;
final position/rotation error and success rate (< 2 cm and < 1 degree) over seeded trials, against the
unrefined perturbed pose.

Closed loop (``omnifield nav run``): a hash-grid field fitted to the room, flights in rooms of three
seeds on the robot's own estimates from rendered camera images, measured in the true world.

    python benchmarks/nav.py [--quick] [--out nav.json]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omnifield.apps.nav.astar import path_length, resample_polyline  # noqa: E402
from omnifield.apps.nav.estimator import EstimatorConfig, PhotometricEstimator, PinholeCamera  # noqa: E402
from omnifield.apps.nav.lie import rotation_angle_deg, so3_exp  # noqa: E402
from omnifield.apps.nav.planner import PlannerConfig, TrajectoryPlanner, heading_yaw  # noqa: E402
from omnifield.apps.nav.scenes import pillar_room  # noqa: E402
from omnifield.io.atomic import write_text_atomic  # noqa: E402
from omnifield.renderers.cameras import look_at  # noqa: E402
from omnifield.renderers.occupancy import OccupancyGridConfig  # noqa: E402
from omnifield.renderers.volume import VolumeRenderer, VolumeRendererConfig  # noqa: E402

ROOM_AABB = (-2.2, -2.2, -0.2, 2.2, 2.2, 2.2)
# corner to corner (the room keeps its corners free of pillars): both diagonals and one side
ROUTES = [((-1.6, -1.6, 1.0), (1.6, 1.6, 1.0)), ((-1.6, 1.6, 0.6), (1.6, -1.6, 1.2)), ((-1.6, -1.6, 0.8), (-1.6, 1.6, 1.2))]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trajectory_row(name, planner, world, waypoints, yaw, dt, seconds):
    """Metrics of one trajectory ``waypoints [T, 3]`` with ``yaw [T]``."""
    with torch.no_grad():
        collision, effort, state = planner.costs(waypoints, yaw, dt)
        body = waypoints[:, None] + (state.rotation[:, None] * planner.body[None, :, None, :]).sum(-1)
        clearance = float(world.sdf(body).min())
    return {"task": "plan", "method": name, "min_clearance_m": round(clearance, 4), "collision_free": clearance > 0,
            "density_crossed": round(float(collision), 4), "length_m": round(path_length(waypoints.numpy()), 3),
            "effort": round(float(effort), 2), "seconds": round(seconds, 2), "peak_rss_mb": round(peak_rss_mb())}


def bench_planning(world, routes, cfg):
    rows = []
    tic = time.perf_counter()
    planner = TrajectoryPlanner(world, ROOM_AABB, cfg)
    grid_seconds = time.perf_counter() - tic
    for route, (start, goal) in enumerate(routes):
        plan = planner.plan(start, goal)
        n = cfg.n_waypoints
        straight = torch.from_numpy(np.linspace(start, goal, n)).float()
        astar = torch.from_numpy(resample_polyline(plan.astar_path, n)).float()
        for name, w, y, sec in (
            ("straight line", straight, heading_yaw(straight), 0.0),
            ("A* (init)", astar, heading_yaw(astar), 0.0),
            ("A* + Adam (ours)", plan.waypoints, plan.yaw, plan.seconds),
        ):
            rows.append({"route": route, **trajectory_row(name, planner, world, w, y, plan.dt, sec)})
    rows.append({"task": "plan", "method": "occupancy grid + ESDF", "seconds": round(grid_seconds, 2),
                 "grid": "x".join(map(str, planner.spec.shape))})
    return rows


def perturb(c2w, translation_m, angle_deg, gen):
    axis, direction = torch.randn(3, generator=gen), torch.randn(3, generator=gen)
    delta = torch.eye(4)
    delta[:3, :3] = so3_exp(axis / axis.norm() * math.radians(angle_deg))
    delta[:3, 3] = direction / direction.norm() * translation_m
    return c2w @ delta


PERTURBATIONS = {"3-6 cm, 3-6 deg": (0.03, 3.0), "10-20 cm, 10-20 deg": (0.10, 10.0)}


def bench_estimation(world, n_trials, cfg, perturbation):
    """Rows for one perturbation level: ``(metres, degrees)`` drawn in ``[x, 2x]``."""
    t_lo, a_lo = PERTURBATIONS[perturbation]
    renderer = VolumeRenderer(ROOM_AABB, VolumeRendererConfig(n_steps_per_diagonal=512, grid=OccupancyGridConfig(resolution=64)))
    renderer.update_occupancy(world, 0)
    camera = PinholeCamera.from_fov(48, 36, 80)
    estimator = PhotometricEstimator(world, renderer, camera, cfg)
    gen = torch.Generator().manual_seed(0)
    init_err, final_err, secs = [], [], []
    for trial in range(n_trials):
        eye = torch.tensor([[-1.5, -1.5, 1.0]]) + (torch.rand(1, 3, generator=gen) - 0.5) * torch.tensor([1.0, 1.0, 0.6])
        true = look_at(eye, torch.tensor([0.5, 0.5, 0.7]), torch.tensor([0.0, 0.0, 1.0]))[0]
        image = renderer.render_image(world, camera.cameras(true[None]), 0)["rgb"]
        t_m = t_lo * (1 + float(torch.rand(1, generator=gen)))
        a_deg = a_lo * (1 + float(torch.rand(1, generator=gen)))
        init = perturb(true, t_m, a_deg, gen)
        est, result = estimator.estimate(image, init, seed=trial)
        err = lambda c: (float((c[:3, 3] - true[:3, 3]).norm()) * 100, float(rotation_angle_deg(c[:3, :3], true[:3, :3])))  # noqa: E731
        init_err.append(err(init))
        final_err.append(err(est))
        secs.append(result.seconds)
    rows = []
    for name, errs, sec in (("perturbed pose (no estimation)", init_err, 0.0), ("photometric SE(3) alignment (ours)", final_err, float(np.mean(secs)))):
        e = np.asarray(errs)
        rows.append({"task": "estimate", "method": name, "perturbation": perturbation, "trials": n_trials,
                     "position_error_cm_median": round(float(np.median(e[:, 0])), 2),
                     "rotation_error_deg_median": round(float(np.median(e[:, 1])), 2),
                     "success_rate": round(float(((e[:, 0] < 2.0) & (e[:, 1] < 1.0)).mean()), 2),
                     "seconds": round(sec, 2), "peak_rss_mb": round(peak_rss_mb())})
    return rows


def bench_closed_loop(seeds, fit_steps: int) -> list[dict]:
    """Closed-loop flights (``omnifield nav run``) in rooms of several seeds: the robot flies on its
    estimates from camera images; goal error, clearance and pose errors are measured in the true world."""
    import tempfile

    from omnifield.apps.nav.cli import learned_room_field
    from omnifield.apps.nav.closed_loop import FlightConfig, flight_metrics, fly

    rows = []
    for seed in seeds:
        torch.manual_seed(seed)
        world = pillar_room(seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            learned = learned_room_field(world, Path(tmp), fit_steps, seed)
        cfg = FlightConfig(seed=seed)
        tic = time.perf_counter()
        m = flight_metrics(fly(world, learned, ROOM_AABB, cfg), world, cfg.goal)
        rows.append({"task": "closed loop", "method": f"room seed {seed}", "seconds": round(time.perf_counter() - tic, 1),
                     "collision_free": not m["collided"], "min_clearance_m": round(m["min_clearance_m"], 3),
                     "goal_error_m": round(m["goal_error_m"], 3), "length_m": round(m["flown_length_m"], 3),
                     "astar_length_m": round(m["astar_length_m"], 3),
                     "position_error_cm_mean": round(m["pose_error_cm_mean"], 2),
                     "rotation_error_deg_mean": round(m["rotation_error_deg_mean"], 2),
                     "peak_rss_mb": round(peak_rss_mb())})
    return rows


def print_table(rows):
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    widths = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    print(" | ".join(k.ljust(widths[k]) for k in keys))
    print("-|-".join("-" * widths[k] for k in keys))
    for r in rows:
        print(" | ".join(str(r.get(k, "")).ljust(widths[k]) for k in keys))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="one route, two estimation trials per level, one closed-loop flight")
    parser.add_argument("--out", help="write the table as a JSON list of rows")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    world = pillar_room()
    plan_cfg = PlannerConfig(n_waypoints=30, steps=150 if args.quick else 250)
    est_cfg = EstimatorConfig(n_rays=128, steps=60) if args.quick else EstimatorConfig(n_rays=256, steps=300)
    rows = bench_planning(world, ROUTES[:1] if args.quick else ROUTES, plan_cfg)
    for level in PERTURBATIONS:
        rows += bench_estimation(world, 2 if args.quick else 8, est_cfg, level)
    rows += bench_closed_loop([0] if args.quick else [0, 1, 2], fit_steps=600)
    print_table(rows)
    if args.out:
        write_text_atomic(args.out, json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
