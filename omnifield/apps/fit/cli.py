"""``omnifield fit image|sdf``: fit a 2-D image or a mesh's signed distance with any backend.

Outputs in ``--out``: ``checkpoint.safetensors`` (the training state, saved every minute, at the end and
on Ctrl-C: ``--resume`` continues it), ``log.jsonl``, ``config.json``, ``metrics.json`` and the result
(``prediction.png`` for images; ``mesh.ply`` for SDFs), all written atomically. The loop is the training
engine's (:mod:`omnifield.engine`); ``--set fit.KEY=VALUE`` / ``--set field.KEY=VALUE`` change any value
of the typed configs, e.g. ``--set fit.loop.checkpoint_every_s=10``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

import imageio.v3 as iio
import numpy as np

from omnifield.apps.fit.image import FitImageConfig, fit_image, load_image
from omnifield.apps.fit.presets import BACKENDS, count_parameters, field_for_budget
from omnifield.apps.fit.sdf import FitSDFConfig, extract_mesh, fit_sdf, load_mesh, mesh_metrics
from omnifield.cli_options import add_loop_arguments, add_method_argument, add_old_name, loop_config
from omnifield.config import config_from_dict, config_to_dict, replace_config
from omnifield.config_overrides import apply_section_overrides
from omnifield.engine.regression import LOG
from omnifield.errors import OmnifieldError
from omnifield.fields.footprint import TRAINING_BYTES_PER_PARAMETER
from omnifield.io.atomic import atomic_path, write_text_atomic
from omnifield.io.checkpoint import load_checkpoint
from omnifield.io.run_folder import CHECKPOINT, claim_output
from omnifield.resources import require_memory

Resume = tuple[dict, dict] | None


def _save(out: Path, configs: dict, metrics: dict) -> None:
    meta = {name: config_to_dict(cfg) for name, cfg in configs.items()}
    write_text_atomic(out / "config.json", json.dumps(meta, indent=2))
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))


def _check_common(args: argparse.Namespace, kind: str) -> None:
    if args.params < 1000:
        raise OmnifieldError(f"expected --params >= 1000, got {args.params}")
    if getattr(args, "seconds", None) is not None and args.minutes:
        raise OmnifieldError("give --minutes or its old form --seconds, not both")
    require_memory(args.params * TRAINING_BYTES_PER_PARAMETER, f"--params {args.params}: training the field")
    claim_output(args.out, kind, continues=True)


def _configs(args: argparse.Namespace, fresh: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any, Resume]:
    """The run's typed ``(field, fit)`` configs and the checkpoint to continue (None for a new fit).

    ``--resume`` takes the configs of the fit in ``--out``, else ``fresh()`` builds them from the options;
    then the budget options, then every ``--set`` apply.
    """
    out = Path(args.out)
    resume: Resume = None
    if args.resume:
        if not (out / CHECKPOINT).is_file():
            raise OmnifieldError(f"{out}: no fit to resume (no {CHECKPOINT}); start one without --resume")
        tensors, meta = load_checkpoint(out / CHECKPOINT)
        if "step" not in meta:
            raise OmnifieldError(f"{out}: this fit holds no training state to continue (it was written before fits "
                                 f"could be resumed); start a new one without --resume")
        configs = meta.get("config") if isinstance(meta.get("config"), dict) else {}
        field_cfg = config_from_dict(configs.get("field"), f"{out / CHECKPOINT} field config")
        fit_cfg = config_from_dict(configs.get("fit"), f"{out / CHECKPOINT} fit config")
        resume = (tensors, meta)
    else:
        field_cfg, fit_cfg = fresh()
    seconds = getattr(args, "seconds", None)
    minutes = seconds / 60.0 if seconds is not None else args.minutes
    given = loop_config(args, minutes=minutes)
    loop = replace_config(fit_cfg.loop, steps=given.steps, minutes=given.minutes, grad_clip=given.grad_clip,
                          progress=given.progress)
    roots = apply_section_overrides({"field": field_cfg, "fit": replace_config(fit_cfg, loop=loop)}, args.set or [])
    roots["fit"].loop.check()
    if resume is not None:
        print(f"resuming {out} at step {resume[1].get('step', '?')}", flush=True)
    else:
        (out / LOG).unlink(missing_ok=True)  # a new fit starts a new log
    return roots["field"], roots["fit"], resume


def cmd_image(args: argparse.Namespace) -> int:
    """Fit an image; print and save PSNR, parameters, time."""
    _check_common(args, "image fit")
    if args.size < 8:
        raise OmnifieldError(f"--size must be >= 8, got {args.size}")
    field_cfg, cfg, resume = _configs(args, lambda: (field_for_budget("image", args.method, args.params),
                                                     FitImageConfig(backend=args.method, size=args.size,
                                                                    seed=args.seed)))
    image = load_image(args.image, cfg.size)
    out = Path(args.out)
    result = fit_image(image, field_cfg, cfg, checkpoint=out / CHECKPOINT, resume=resume, log=out / LOG)
    metrics = {"backend": cfg.backend, "psnr": result["psnr"], "params": count_parameters(result["field"]),
               "seconds": result["seconds"], "steps": result["steps"], "height": image.shape[0], "width": image.shape[1]}
    _save(out, {"field": field_cfg, "fit": cfg}, metrics)
    with atomic_path(out / "prediction.png") as tmp:
        iio.imwrite(tmp, (result["prediction"].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8), extension=".png")
    print(f"{cfg.backend}: PSNR {result['psnr']:.2f} dB, {metrics['params']} parameters, "
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
    field_cfg, cfg, resume = _configs(args, lambda: (field_for_budget("sdf", args.method, args.params), FitSDFConfig(
        backend=args.method, n_samples=args.samples, mesh_resolution=args.resolution, seed=args.seed)))
    out = Path(args.out)
    result = fit_sdf(mesh, field_cfg, cfg, checkpoint=out / CHECKPOINT, resume=resume, log=out / LOG)
    pred = extract_mesh(result["field"], cfg.mesh_resolution)
    scores = mesh_metrics(pred, mesh)
    metrics = {"backend": cfg.backend, **scores, "params": count_parameters(result["field"]),
               "seconds": result["seconds"], "steps": result["steps"]}
    _save(out, {"field": result["field"].cfg, "fit": cfg}, metrics)
    with atomic_path(out / "mesh.ply") as tmp:
        pred.export(tmp, file_type="ply")
    print(f"{cfg.backend}: Chamfer {scores['chamfer']:.5f} ({scores['chamfer_rel'] * 100:.2f} % of the diagonal), "
          f"normal consistency {scores['normal_consistency']:.3f}, IoU {scores['iou']:.3f}, "
          f"{metrics['params']} parameters, {result['steps']} steps in {result['seconds']:.1f} s -> {out}")
    return 0


def _common(parser: argparse.ArgumentParser, default_params: int) -> None:
    add_method_argument(parser, "field backend (default hashgrid)", choices=list(BACKENDS), default="hashgrid",
                        old_names=("--backend",))
    parser.add_argument("--params", type=int, default=default_params,
                        help=f"parameter budget the backend is sized to (default {default_params})")
    add_loop_arguments(parser, steps=2000,
                       resume_what="the fit in --out, with its own configs and this command's budget,")
    add_old_name(parser, "--seconds", "--minutes", "seconds", type=float, metavar="SECONDS",
                 help="old form of --minutes: the budget in seconds")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the field, targets and batches (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config value, e.g. fit.batch_pixels=4096, fit.loop.log_every=10 or "
                             "field.decoder.width=128 (repeatable)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``fit image`` and ``fit sdf``."""
    fit = sub.add_parser("fit", help="fit a 2-D image or a 3-D signed distance with any field backend")
    tasks = fit.add_subparsers(dest="task", metavar="TASK")
    image = tasks.add_parser("image", help="fit an RGB image (PSNR)")
    image.add_argument("image", help="image file (png, jpg, ...)")
    image.add_argument("--size", type=int, default=256,
                       help="resize so the longer side has this many pixels (default 256)")
    _common(image, 150_000)
    image.set_defaults(func=cmd_image)
    sdf = tasks.add_parser("sdf", help="fit a mesh's signed distance, export the marching-cubes mesh")
    sdf.add_argument("mesh", help="triangle mesh (obj, ply, stl, ...)")
    sdf.add_argument("--resolution", type=int, default=128, help="marching-cubes grid resolution (default 128)")
    sdf.add_argument("--samples", type=int, default=200_000,
                     help="training points with exact signed distances (default 200000)")
    _common(sdf, 400_000)
    sdf.set_defaults(func=cmd_sdf)
    fit.set_defaults(func=lambda args: fit.print_help() or 2)
