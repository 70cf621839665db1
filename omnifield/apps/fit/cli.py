"""``omnifield fit image|sdf``: fit a 2-D image or a mesh's signed distance with any backend.

Outputs in ``--out``: ``config.json``, ``checkpoint.safetensors``, ``metrics.json`` and the result
(``prediction.png`` for images; ``mesh.ply`` for SDFs), all written atomically.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from omnifield.apps.fit.image import FitImageConfig, fit_image, load_image
from omnifield.apps.fit.presets import BACKENDS, count_parameters, field_for_budget
from omnifield.apps.fit.sdf import FitSDFConfig, extract_mesh, fit_sdf, load_mesh, mesh_metrics
from omnifield.config import config_to_dict
from omnifield.errors import OmnifieldError
from omnifield.fields.footprint import TRAINING_BYTES_PER_PARAMETER
from omnifield.io.atomic import atomic_path, write_text_atomic
from omnifield.io.checkpoint import module_state, save_checkpoint
from omnifield.io.run_folder import claim_output
from omnifield.resources import require_memory


def _save(out: Path, field: torch.nn.Module, configs: dict, metrics: dict) -> None:
    meta = {name: config_to_dict(cfg) for name, cfg in configs.items()}
    write_text_atomic(out / "config.json", json.dumps(meta, indent=2))
    save_checkpoint(out / "checkpoint.safetensors", module_state("field", field), {"config": meta})
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))


def _check_common(args: argparse.Namespace, kind: str) -> None:
    if args.steps < 1 or args.seconds < 0 or args.params < 1000:
        raise OmnifieldError("--steps must be >= 1, --seconds >= 0 and --params >= 1000")
    require_memory(args.params * TRAINING_BYTES_PER_PARAMETER, f"--params {args.params}: training the field")
    claim_output(args.out, kind, continues=True)


def cmd_image(args: argparse.Namespace) -> int:
    """Fit an image; print and save PSNR, parameters, time."""
    _check_common(args, "image fit")
    if args.size < 8:
        raise OmnifieldError(f"--size must be >= 8, got {args.size}")
    image = load_image(args.image, args.size)
    field_cfg = field_for_budget("image", args.backend, args.params)
    cfg = FitImageConfig(steps=args.steps, seconds=args.seconds, size=args.size, seed=args.seed)
    torch.set_num_threads(max(1, args.threads))
    result = fit_image(image, field_cfg, cfg)
    out = Path(args.out)
    metrics = {"backend": args.backend, "psnr": result["psnr"], "params": count_parameters(result["field"]),
               "seconds": result["seconds"], "steps": result["steps"], "height": image.shape[0], "width": image.shape[1]}
    _save(out, result["field"], {"field": field_cfg, "fit": cfg}, metrics)
    with atomic_path(out / "prediction.png") as tmp:
        iio.imwrite(tmp, (result["prediction"].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8), extension=".png")
    print(f"{args.backend}: PSNR {result['psnr']:.2f} dB, {metrics['params']} parameters, "
          f"{result['steps']} steps in {result['seconds']:.1f} s -> {out}")
    return 0


def cmd_sdf(args: argparse.Namespace) -> int:
    """Fit a signed-distance field; extract a mesh; print and save Chamfer, normal consistency, IoU."""
    _check_common(args, "sdf fit")
    if args.resolution < 16:
        raise OmnifieldError(f"--resolution must be >= 16, got {args.resolution}")
    if args.samples < 1000:
        raise OmnifieldError(f"--samples must be >= 1000, got {args.samples}")
    mesh = load_mesh(args.mesh)
    field_cfg = field_for_budget("sdf", args.backend, args.params)
    cfg = FitSDFConfig(steps=args.steps, seconds=args.seconds, n_samples=args.samples,
                       mesh_resolution=args.resolution, seed=args.seed)
    torch.set_num_threads(max(1, args.threads))
    result = fit_sdf(mesh, field_cfg, cfg)
    pred = extract_mesh(result["field"], cfg.mesh_resolution)
    scores = mesh_metrics(pred, mesh)
    out = Path(args.out)
    metrics = {"backend": args.backend, **scores, "params": count_parameters(result["field"]),
               "seconds": result["seconds"], "steps": result["steps"]}
    _save(out, result["field"], {"field": result["field"].cfg, "fit": cfg}, metrics)
    with atomic_path(out / "mesh.ply") as tmp:
        pred.export(tmp, file_type="ply")
    print(f"{args.backend}: Chamfer {scores['chamfer']:.5f} ({scores['chamfer_rel'] * 100:.2f} % of the diagonal), "
          f"normal consistency {scores['normal_consistency']:.3f}, IoU {scores['iou']:.3f}, "
          f"{metrics['params']} parameters, {result['steps']} steps in {result['seconds']:.1f} s -> {out}")
    return 0


def _common(parser: argparse.ArgumentParser, default_params: int) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="hashgrid", help="field backend (default hashgrid)")
    parser.add_argument("--params", type=int, default=default_params, help="parameter budget the backend is sized to")
    parser.add_argument("--steps", type=int, default=2000, help="training steps")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after this much training time (0: no limit)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output folder")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``fit image`` and ``fit sdf``."""
    fit = sub.add_parser("fit", help="fit a 2-D image or a 3-D signed distance with any field backend")
    tasks = fit.add_subparsers(dest="task", metavar="TASK")
    image = tasks.add_parser("image", help="fit an RGB image (PSNR)")
    image.add_argument("image", help="image file (png, jpg, ...)")
    image.add_argument("--size", type=int, default=256, help="resize so the longer side has this many pixels")
    _common(image, 150_000)
    image.set_defaults(func=cmd_image)
    sdf = tasks.add_parser("sdf", help="fit a mesh's signed distance, export the marching-cubes mesh")
    sdf.add_argument("mesh", help="triangle mesh (obj, ply, stl, ...)")
    sdf.add_argument("--resolution", type=int, default=128, help="marching-cubes grid resolution")
    sdf.add_argument("--samples", type=int, default=200_000, help="training points with exact signed distances")
    _common(sdf, 400_000)
    sdf.set_defaults(func=cmd_sdf)
    fit.set_defaults(func=lambda args: fit.print_help() or 2)
