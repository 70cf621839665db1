"""``omnifield nav``: closed-loop flight in a procedural room, and occupancy/ESDF exports of any field.

    omnifield nav run --out outputs/nav [--quick] [--seed 0] [--steps 600]
    omnifield nav export --scene room --out outputs/nav_grid        # the procedural room
    omnifield nav export outputs/lego --out outputs/lego_grid        # a trained run (field or splat)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from omnifield.cli_options import add_new_and_old, add_old_name, add_optional_positional
from omnifield.errors import OmnifieldError
from omnifield.io.run_folder import claim_output
from omnifield.resources import require_memory

ROOM_AABB = (-2.2, -2.2, -0.2, 2.2, 2.2, 2.2)
FIELD_FILE = "learned_field.safetensors"
SUPERSAMPLE = 2  # density samples per cell and axis; a cell keeps their maximum
BYTES_PER_CELL = 64  # density, occupancy, ESDF and the distance transform's work arrays, with sampling chunks


def learned_room_field(world, out: Path, fit_steps: int, seed: int):
    """The learned model of the room, fitted by the training engine into ``out/learned_field.safetensors``:
    re-opened when fitted there before with the same settings; a fit cut short there (Ctrl-C, a crash)
    continues from its checkpoint."""
    from omnifield.apps.nav.world_fit import WorldFitConfig, fit_field_to_world, small_hashgrid_config
    from omnifield.config import config_to_dict
    from omnifield.engine import LoopConfig
    from omnifield.io.checkpoint import load_checkpoint, load_module_state

    path = out / FIELD_FILE
    recipe = {"fit_steps": fit_steps, "seed": seed}
    cfg = small_hashgrid_config(ROOM_AABB)
    field = cfg.build()
    resume = None
    if path.is_file():
        tensors, meta = load_checkpoint(path)
        if meta.get("recipe") == recipe:
            if meta.get("step", fit_steps) >= fit_steps:  # a finished fit (files from before the engine hold no step)
                load_module_state("field", field, tensors, str(path))
                return field
            resume = (tensors, meta)
    fit_cfg = WorldFitConfig(batch=4096, seed=seed, loop=LoopConfig(steps=fit_steps))
    continuing = f", continuing at step {resume[1].get('step')}" if resume else ""
    print(f"fitting a hash-grid field to the room ({fit_steps} steps{continuing})...", flush=True)
    fit_field_to_world(world, field, fit_cfg, checkpoint=path, meta={"field": config_to_dict(cfg), "recipe": recipe},
                       resume=resume, log=out / "learned_field_log.jsonl")
    return field


def cmd_run(args: argparse.Namespace) -> int:
    from omnifield.apps.nav.closed_loop import FlightConfig, flight_metrics, fly
    from omnifield.apps.nav.grid import GridSpec, occupancy_from_density, sample_density
    from omnifield.apps.nav.plots import flight_frames, plot_flight_3d
    from omnifield.apps.nav.scenes import pillar_room
    from omnifield.io.atomic import write_text_atomic
    from omnifield.io.video import write_video

    if not 0 <= args.pillars <= 8:
        raise OmnifieldError(f"nav run: --pillars must be between 0 and 8, got {args.pillars}")
    if args.fit_steps < 1:
        raise OmnifieldError(f"nav run: --steps must be positive, got {args.fit_steps}")
    torch.manual_seed(args.seed)
    if getattr(args, "threads", None) is None:  # small batches: more than two threads only add overhead
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    out = Path(args.out)
    claim_output(out, "navigation output", continues=True)
    out.mkdir(parents=True, exist_ok=True)
    world = pillar_room(n_pillars=args.pillars, seed=args.seed)
    learned = learned_room_field(world, out, args.fit_steps, args.seed)  # an under-fitted field misleads the estimator
    cfg = FlightConfig(seed=args.seed)
    if args.quick:
        cfg.planner.n_waypoints, cfg.planner.steps, cfg.planner.replan_steps = 14, 120, 15
        cfg.estimator.steps, cfg.estimator.n_rays = 25, 128
        cfg.image_size = (32, 24)
    log = fly(world, learned, ROOM_AABB, cfg, progress=lambda k, n: print(f"step {k}/{n}", flush=True))
    metrics = flight_metrics(log, world, cfg.goal)
    spec = GridSpec.with_voxel_size(ROOM_AABB, 0.1)
    occupied = occupancy_from_density(sample_density(learned, spec), cfg.planner.occupancy_threshold)
    pts = spec.to_world(np.argwhere(occupied))
    pts = pts[(pts[:, 2] > 0.05) & (np.abs(pts[:, :2]) < 2.0).all(1)]  # no floor or walls in the plot
    plot_flight_3d(out / "flight_3d.png", pts[:: max(1, len(pts) // 3000)], log, cfg.goal)
    video = write_video(out / "flight.mp4", flight_frames(pts[:, :2], log, ROOM_AABB), fps=4)
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    print(f"wrote {out / 'flight_3d.png'}, {video}, {out / 'metrics.json'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from types import SimpleNamespace

    from omnifield.apps.nav.exports import save_grids_npz, save_occupied_ply, save_pgm_slice
    from omnifield.apps.nav.grid import GridSpec, occupancy_from_density, sample_density, signed_distance
    from omnifield.apps.nav.scenes import pillar_room
    from omnifield.io.progress import counting_progress
    from omnifield.renderers.density_threshold import choose_threshold, measured_densities, run_density

    if (args.run is None) == (args.scene is None):
        raise OmnifieldError("nav export: give exactly one of a run folder RUN or --scene room")
    if args.voxel <= 0:
        raise OmnifieldError(f"nav export: --voxel must be positive, got {args.voxel}")
    threshold = None
    if args.run is not None:
        from omnifield.apps.recon.open_run import open_run

        run = open_run(args.run)  # a field or a splat run (the Gaussians' density)
        density, bounds = run_density(run), tuple(float(b) for b in run.field.aabb)
        threshold = choose_threshold(measured_densities(run), args.threshold)  # refused before the long sampling
    else:
        density, bounds = pillar_room().density, ROOM_AABB
    out = Path(args.out)
    spec = GridSpec.with_voxel_size(bounds, args.voxel)
    n_cells = int(np.prod(np.asarray(spec.shape, dtype=np.int64)))
    require_memory(n_cells * BYTES_PER_CELL, f"nav export: --voxel {args.voxel} gives a grid of "
                   f"{' x '.join(str(n) for n in spec.shape)} cells, which")
    claim_output(out, "navigation output", continues=True)
    with counting_progress(density, n_cells * SUPERSAMPLE**3, "density grid", args.quiet) as counted:
        grid = sample_density(SimpleNamespace(density=counted), spec, supersample=SUPERSAMPLE)
    if threshold is None:  # an analytic scene: its own grid is the density distribution
        threshold = choose_threshold(grid, args.threshold)
    print(threshold.describe())
    occupied = occupancy_from_density(grid, threshold.value)
    threshold.check_kept(float(occupied.mean()), f"the {' x '.join(str(n) for n in spec.shape)} export grid")
    esdf = signed_distance(occupied, spec.voxel_size)
    out.mkdir(parents=True, exist_ok=True)
    save_grids_npz(out / "grid.npz", spec, grid, occupied, esdf)
    save_occupied_ply(out / "occupied.ply", spec, occupied, esdf)
    slice_z = args.slice_z if args.slice_z is not None else 0.5 * (bounds[2] + bounds[5])
    pgm, meta = save_pgm_slice(out / "map.pgm", spec, occupied, slice_z)
    print(f"grid {spec.shape}, {int(occupied.sum())} occupied cells; wrote {out / 'grid.npz'}, "
          f"{out / 'occupied.ply'}, {pgm}, {meta}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``nav run`` and ``nav export``."""
    nav = sub.add_parser("nav", help="robot navigation: closed-loop flight, occupancy/ESDF exports")
    nav_sub = nav.add_subparsers(dest="nav_command", metavar="NAV_COMMAND", required=True)

    run = nav_sub.add_parser("run", help="fly a quadrotor through a procedural room with vision-only state estimation")
    run.add_argument("--out", default="outputs/nav", help="output folder (plot, video, metrics, learned field)")
    run.add_argument("--seed", type=int, default=0, help="random seed of the room, the field fit and the flight (default 0)")
    run.add_argument("--pillars", type=int, default=5, help="number of pillars in the room")
    add_new_and_old(run, "--steps", ("--fit-steps",), dest="fit_steps", type=int, default=600,
                    help="steps fitting the learned field to the room (default 600); a fit in --out with the same "
                         "steps and seed is re-used, or continued when it was cut short")
    run.add_argument("--quick", action="store_true", help="small settings: a shorter, coarser flight (under a minute)")
    run.set_defaults(func=cmd_run)

    export = nav_sub.add_parser("export", help="occupancy and signed-distance grids of a field (npz, PLY, PGM)")
    add_optional_positional(export, "run", "RUN", "a trained run folder (field or splat) or a Compact-3DGS .ofz file (or give --scene)")
    add_old_name(export, "--run", "the positional RUN", "run", default=None, metavar="RUN")
    export.add_argument("--scene", choices=["room"], help="an analytic scene instead of a run")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--voxel", type=float, default=0.05, help="cell size (world units)")
    export.add_argument("--threshold", type=float, default=None,
                        help="density above which a cell is occupied (default: chosen from the density distribution, "
                             "the Otsu split of its log density between empty space and surfaces; printed)")
    export.add_argument("--slice-z", type=float, default=None, help="height of the PGM slice (default: box middle)")
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    export.set_defaults(func=cmd_export)
