"""Figures of a flight: a 3-D plot of planned/flown/estimated paths and per-step video frames."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from omnifield.io.atomic import atomic_path  # noqa: E402


def _figure_to_array(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def plot_flight_3d(path, obstacles: np.ndarray, log, goal) -> Path:
    """3-D PNG: obstacle points ``[N, 3]``, A* path, initial plan, flown (true) and estimated positions."""
    fig = plt.figure(figsize=(7, 6))
    ax = fig.add_subplot(projection="3d")
    if len(obstacles):
        ax.scatter(*obstacles.T, s=2, c="0.6", alpha=0.25, label="occupied (learned field)")
    ax.plot(*log.astar_path.T, "k:", lw=1, label="A* initialisation")
    ax.plot(*log.initial_plan.T, "b-", lw=1.5, label="initial plan")
    true, est = np.asarray(log.true_positions), np.asarray(log.estimated_positions)
    ax.plot(*true.T, "g-", lw=2, label="flown (true)")
    ax.scatter(*est.T, s=12, c="r", label="estimated poses")
    ax.scatter(*np.asarray(goal)[:, None], s=60, c="m", marker="*", label="goal")
    ax.set_xlabel("x (m)"), ax.set_ylabel("y (m)"), ax.set_zlabel("z (m)")
    ax.legend(loc="upper left", fontsize=7)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def flight_frames(obstacles_xy: np.ndarray, log, bounds: tuple) -> list[np.ndarray]:
    """Video frames ``[H, W, 3]`` uint8: the robot's camera image beside a top view of the paths so far."""
    frames = []
    fig, (ax_img, ax_map) = plt.subplots(1, 2, figsize=(9, 4))
    true, est = np.asarray(log.true_positions), np.asarray(log.estimated_positions)
    for k, image in enumerate(log.images):
        ax_img.clear(), ax_map.clear()
        ax_img.imshow(image)
        ax_img.set_title(f"camera, step {k + 1}/{len(log.images)}")
        ax_img.axis("off")
        ax_map.scatter(*obstacles_xy.T, s=1, c="0.7")
        ax_map.plot(*log.initial_plan[:, :2].T, "b-", lw=1, label="initial plan")
        ax_map.plot(*log.planned_paths[k][:, :2].T, "c--", lw=1, label="current plan")
        ax_map.plot(*true[: k + 1, :2].T, "g-", lw=2, label="flown")
        ax_map.plot(*est[: k + 1, :2].T, "r.", ms=4, label="estimated")
        ax_map.set_xlim(bounds[0], bounds[3]), ax_map.set_ylim(bounds[1], bounds[4])
        ax_map.set_aspect("equal")
        ax_map.legend(loc="lower right", fontsize=6)
        frames.append(_figure_to_array(fig))
    plt.close(fig)
    return frames
