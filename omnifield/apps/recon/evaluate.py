"""Evaluation (PSNR/SSIM on held-out views) and rendering (test views, depth, orbit video)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from omnifield.apps.recon.coverage import Coverage, coverage_picture, covered_scores
from omnifield.apps.recon.open_run import SplatRun
from omnifield.apps.recon.run import Run
from omnifield.data.blender import PosedImages
from omnifield.data.images import composite_on, to_uint8
from omnifield.io.video import colorize_depth, write_png, write_video
from omnifield.metrics import psnr, ssim
from omnifield.renderers.cameras import Cameras, orbit_cameras, spiral_cameras
from omnifield.renderers.space import NEAR_MARGIN

WHITE = torch.ones(3)


def evaluate(run: Run | SplatRun, data: PosedImages, out_dir: Path | None = None, limit: int | None = None,
             progress: bool = True, chunk: int = 8192, training_views: bool = False,
             coverage: Coverage | None = None) -> dict[str, Any]:
    """Render every view of ``data`` on white, compare with ground truth composited on white.

    Held-out views are rendered from their given poses with the mean appearance code; with
    ``training_views`` (``data`` is the run's training split) each view uses its refined pose and
    its own appearance code (:meth:`Run.training_views`).

    Returns mean ``psnr``, ``ssim``, per-view values, ``samples_per_ray`` (field runs) and seconds per frame.
    With ``out_dir``, writes ``<name>.png`` (render | ground truth) and, for field runs, ``<name>_depth.png``
    there. At most ``chunk`` rays are rendered at once (memory grows with it).

    ``coverage`` (field runs): each view is also scored on the pixels at least ``coverage.min_views`` training
    views saw and on the rest (:func:`covered_scores`, summed up under ``coverage``), and with ``out_dir``
    ``<name>_coverage.png`` shows the rest tinted red.
    """
    run.field.eval()
    cameras, codes = run.training_views(data.cameras) if training_views else (data.cameras, None)
    n = len(data.images) if limit is None else min(limit, len(data.images))
    per_view, spr, seconds = [], [], []
    for i in tqdm(range(n), desc="evaluating", disable=not progress, leave=False):
        t0 = time.perf_counter()
        out = run.render(cameras, i, WHITE, chunk=chunk, appearance=None if codes is None else codes[i])
        seconds.append(time.perf_counter() - t0)
        gt = composite_on(data.images[i], WHITE)
        pred = out["rgb"].clamp(0, 1)
        per_view.append({"name": data.names[i], "psnr": psnr(pred, gt), "ssim": float(ssim(pred, gt))})
        if coverage is not None:
            seen_by = coverage.count(cameras, i, out)
            per_view[-1].update(covered_scores(pred, gt, seen_by, coverage.min_views))
            if out_dir is not None:
                write_png(out_dir / f"{data.names[i]}_coverage.png",
                          to_uint8(coverage_picture(pred, seen_by >= coverage.min_views)))
        if "samples_per_ray" in out:
            spr.append(out["samples_per_ray"])
        if out_dir is not None:
            write_png(out_dir / f"{data.names[i]}.png", to_uint8(torch.cat([pred, gt], dim=1)))
            if "depth" in out:
                write_png(out_dir / f"{data.names[i]}_depth.png",
                          colorize_depth(out["depth"].numpy(), out["alpha"].numpy()))
    metrics = {
        "psnr": float(np.mean([v["psnr"] for v in per_view])),
        "ssim": float(np.mean([v["ssim"] for v in per_view])),
        "seconds_per_frame": float(np.mean(seconds)),
        "n_views": n,
        "views": per_view,
    }
    if spr:
        metrics["samples_per_ray"] = float(np.mean(spr))
    if coverage is not None:
        def mean_of(key: str) -> float | None:
            values = [v[key] for v in per_view if v[key] is not None]
            return float(np.mean(values)) if values else None

        metrics["coverage"] = {"min_views": coverage.min_views, "covered": mean_of("covered"),
                               "psnr_covered": mean_of("psnr_covered"), "psnr_uncovered": mean_of("psnr_uncovered")}
    return metrics


def render_cameras(run: Run | SplatRun, cameras: Cameras, progress: bool = True, chunk: int = 8192) -> list[np.ndarray]:
    """Render every camera on white, ``chunk`` rays at a time; uint8 frames ``[H, W, 3]``."""
    run.field.eval()
    frames = []
    for i in tqdm(range(len(cameras)), desc="rendering", disable=not progress, leave=False):
        frames.append(to_uint8(run.render(cameras, i, WHITE, chunk=chunk)["rgb"]))
    return frames


def video_cameras(run: Run | SplatRun, reference: Cameras, n_frames: int) -> Cameras:
    """The camera path of a run's video: an orbit at the reference cameras' mean radius and height around the
    box centre (objects and splat runs) or the scene centre and up axis (unbounded scenes); LLFF's spiral for
    forward-facing scenes, focused at 4x the nearest depth."""
    if run.kind == "splat":
        return orbit_cameras(reference, n_frames)
    cfg = run.renderer.cfg
    if cfg.space == "ndc":
        return spiral_cameras(reference, n_frames, 4.0 * cfg.ndc_near / NEAR_MARGIN)
    if cfg.space == "contract":
        return orbit_cameras(reference, n_frames, torch.tensor(cfg.space_center), torch.tensor(cfg.space_rotation[3:6]))
    return orbit_cameras(reference, n_frames)


def render_orbit(run: Run | SplatRun, reference: Cameras, out_path: Path, n_frames: int = 60, fps: int = 24,
                 progress: bool = True, chunk: int = 8192) -> Path:
    """The run's video (:func:`video_cameras`) around the reference cameras."""
    frames = render_cameras(run, video_cameras(run, reference, n_frames), progress, chunk)
    return write_video(out_path, frames, fps=fps)
