"""The splat options of ``omnifield train --method splat`` (built into typed configs here, and nowhere
else) and ``omnifield export splat RUN_DIR --out scene.ply``: a trained splat run as a standard 3DGS .ply."""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from pathlib import Path

from omnifield.apps.splat.config import INITS, SplatTrainConfig
from omnifield.cli_options import loop_config, refuse_changed_settings
from omnifield.config import config_from_dict
from omnifield.config_overrides import apply_override
from omnifield.engine import LoopConfig
from omnifield.errors import OmnifieldError
from omnifield.fields.compact_gaussians import CompactGaussianScene
from omnifield.io.checkpoint import load_checkpoint
from omnifield.io.run_folder import checkpoint_meta
from omnifield.io.splat_ply import save_splat_ply
from omnifield.io.splat_run import CHECKPOINT, load_splat_run

DEFAULTS = SplatTrainConfig()


def add_splat_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Splat-specific options of ``omnifield train`` (``--steps``, ``--minutes``, ``--seed`` are shared); returns
    their group (options that apply to ``--method splat`` only)."""
    g = parser.add_argument_group("Gaussian splatting (--method splat)")
    g.add_argument("--init", choices=INITS, default="auto",
                   help="initial Gaussians: the capture's sparse points (scene), points triangulated from the "
                        "training photos with their poses (triangulate, COLMAP), points on training rays within "
                        "the per-view depth bounds (views), random points in --aabb, --init-points FILE (world "
                        "units) or --init-nerf's density; auto (default) = scene, else triangulate for photos "
                        "without alpha, else random")
    g.add_argument("--init-points", metavar="FILE", help="point cloud (.ply or COLMAP points3D.txt) for --init points")
    g.add_argument("--init-nerf", metavar="RUN", help="trained radiance-field run folder for --init nerf")
    g.add_argument("--n-init", type=int, default=DEFAULTS.n_init,
                   help="number of initial Gaussians (random / views / nerf)")
    g.add_argument("--aabb", type=float, nargs=6, default=list(DEFAULTS.aabb),
                   metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"), help="scene box (random init, colour grid)")
    g.add_argument("--sh-degree", type=int, default=DEFAULTS.sh_degree, choices=[0, 1, 2, 3],
                   help="maximum SH degree")
    g.add_argument("--sh-interval", type=int, default=DEFAULTS.sh_interval,
                   help="raise the active SH degree every N steps")
    g.add_argument("--max-gaussians", type=int, default=DEFAULTS.max_gaussians,
                   help="cap on the number of Gaussians (0 = none)")
    g.add_argument("--densify-from", type=float, default=DEFAULTS.densify_from,
                   help="fraction of the run at which density control starts if --refine-start comes later; "
                        "default: 1/60 when the run starts from fewer than --n-init Gaussians (sparse SfM "
                        "points), else only --refine-start")
    g.add_argument("--densify-until", type=float, default=DEFAULTS.densify_until,
                   help="fraction of the run with density control")
    g.add_argument("--refine-every", type=int, default=DEFAULTS.refine_every, help="density control period in steps")
    g.add_argument("--reset-every", type=int, default=DEFAULTS.reset_every, help="opacity reset period in steps")
    g.add_argument("--refine-start", type=int, default=DEFAULTS.refine_start,
                   help="first step of density control (or --densify-from, whichever comes first)")
    g.add_argument("--depth-weight", type=float, default=DEFAULTS.depth_weight,
                   help="weight of the sparse depth loss: L1 in disparity between the rendered depth and the depths "
                        "of the capture's structure-from-motion points (else points triangulated from the training "
                        "photos) in the views whose tracks hold them (gsplat's depth_loss); default: 0.01 for photos "
                        "without alpha, 0 for images with alpha")
    g.add_argument("--max-scale-ratio", type=float, default=DEFAULTS.max_scale_ratio,
                   help="penalise Gaussians longer than this many times their thinnest axis (PhysGaussian's "
                        "regulariser, splatfacto's use_scale_regularization with max_gauss_ratio 10): fewer "
                        "spikes in views between the photos; 0 = off; default: 10 for 360-degree photo captures, "
                        "off for forward-facing ones (thin structures need thin Gaussians) and objects with alpha")
    g.add_argument("--eval-views", type=int, default=DEFAULTS.eval_views,
                   help="evaluate on the first N test views (0 = all)")
    g.add_argument("--compact", action="store_true", help="Compact-3DGS: masks, hash-grid colour, RVQ, compressed file")
    g.add_argument("--rvq-from", type=float, default=DEFAULTS.rvq_from,
                   help="fraction of the run after which RVQ is on (--compact; paper: the last 1k of 30k steps)")
    g.add_argument("--mask-lambda", type=float, default=DEFAULTS.mask_lambda,
                   help="weight of the volume-mask loss (--compact; paper: 4e-3 synthetic objects, 5e-4 real scenes)")
    g.add_argument("--mask-lr", type=float, default=DEFAULTS.mask_lr,
                   help="Adam learning rate of the mask logits (--compact; paper: 1e-3 synthetic, 1e-2 real scenes)")
    g.add_argument("--color-lr", type=float, default=DEFAULTS.color_lr,
                   help="initial Adam learning rate of the colour hash grid and MLP, warmed up over 100 steps, then "
                        "x0.33 at each --color-lr-decay-at (--compact; paper: 1e-2 real scenes, 1e-3 synthetic "
                        "objects in 30k steps)")
    g.add_argument("--color-lr-decay-at", type=float, nargs="*", default=list(DEFAULTS.color_lr_decay_at),
                   metavar="FRACTION",
                   help="fractions of the run where the colour field's learning rate drops x0.33 (--compact; "
                        "paper: 5/6 for synthetic objects, 1/6 1/2 5/6 for real scenes)")
    return g


def splat_configs(args: argparse.Namespace) -> tuple[SplatTrainConfig, LoopConfig]:
    """The typed configs of ``train --method splat``'s options, then every ``--set splat.KEY=VALUE`` /
    ``--set loop.KEY=VALUE``. With ``--resume`` the settings are the run's (``--no-eval`` and the budget
    options still apply; a setting given with another value than the run's, or ``--set splat.*``, is refused:
    a run keeps its settings)."""
    assignments = list(getattr(args, "set", None) or [])
    for assignment in assignments:
        if assignment.split(".", 1)[0] not in ("splat", "loop") or "." not in assignment.split("=", 1)[0]:
            raise OmnifieldError(f"--set {assignment!r}: with --method splat, must start with splat. or loop.")
    if args.resume:
        if any(a.startswith("splat.") for a in assignments):
            raise OmnifieldError("--set splat.*: a resumed run keeps its settings (only loop.* may change)")
        cfg, stored_loop = _run_configs(Path(args.out))
        refuse_changed_settings(args, asdict(cfg), str(args.out))
        cfg = replace(cfg, evaluate=cfg.evaluate and not args.no_eval)
    else:
        cfg = SplatTrainConfig(
            init=args.init, init_points=args.init_points or "", init_nerf=args.init_nerf or "", n_init=args.n_init,
            aabb=tuple(args.aabb), sh_degree=args.sh_degree, sh_interval=args.sh_interval,
            max_gaussians=args.max_gaussians, densify_from=args.densify_from,
            densify_until=args.densify_until, refine_every=args.refine_every,
            reset_every=args.reset_every, refine_start=args.refine_start, compact=args.compact,
            rvq_from=args.rvq_from, mask_lambda=args.mask_lambda, mask_lr=args.mask_lr, color_lr=args.color_lr,
            color_lr_decay_at=tuple(args.color_lr_decay_at), s3im_weight=args.s3im_weight,
            depth_weight=args.depth_weight, max_scale_ratio=args.max_scale_ratio,
            downscale=args.downscale, seed=args.seed, evaluate=not args.no_eval, eval_views=args.eval_views)
        stored_loop = LoopConfig()  # log_every 100 = the density-control period, so its reports reach the log
    loop = loop_config(args, log_every=stored_loop.log_every, checkpoint_every_s=stored_loop.checkpoint_every_s)
    roots = {"splat": cfg, "loop": loop}
    for assignment in assignments:
        section, rest = assignment.split(".", 1)
        roots[section] = apply_override(roots[section], rest, section)
    roots["splat"].check()
    roots["loop"].check()
    return roots["splat"], roots["loop"]


def _run_configs(run_dir: Path) -> tuple[SplatTrainConfig, LoopConfig]:
    """The settings a splat run was trained with, from its checkpoint's header."""
    meta = checkpoint_meta(run_dir / CHECKPOINT) or load_checkpoint(run_dir / CHECKPOINT)[1]  # that names the fault
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    where = f"{run_dir / CHECKPOINT} config"
    cfg = config_from_dict(config.get("options"), f"{where}.options")
    loop = config_from_dict(config.get("loop"), f"{where}.loop")
    if not (isinstance(cfg, SplatTrainConfig) and isinstance(loop, LoopConfig)) or "training" not in meta:
        raise OmnifieldError(f"{run_dir / CHECKPOINT}: holds no training state (written by an older omnifield or "
                             "by convert), so it cannot continue; train into a new --out")
    return cfg, loop


def cmd_export_splat(args: argparse.Namespace) -> int:
    """Write the run's Gaussians (Compact-3DGS: masked, quantized, colour baked into SH) to ``--out``."""
    scene = load_splat_run(args.run)
    if isinstance(scene, CompactGaussianScene):
        scene = scene.to_plain_scene()
    out = Path(args.out) if args.out else Path(args.run) / "scene.ply"
    save_splat_ply(scene, out)
    print(f"wrote {len(scene)} Gaussians (SH degree {scene.max_sh_degree}) to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export splat`` (an ``export`` command with a ``splat`` target)."""
    existing = sub.choices.get("export")
    if existing is None:
        existing = sub.add_parser("export", help="export a trained run to a standard file format")
        existing.set_defaults(func=lambda args: existing.print_help() or 2)
    targets = next((a for a in existing._actions if isinstance(a, argparse._SubParsersAction)), None)
    if targets is None:
        targets = existing.add_subparsers(dest="export_target", metavar="TARGET")
    p = targets.add_parser("splat", help="Gaussian splats as a 3DGS .ply (binary, read by splat viewers)",
                           description="Write a splat run's Gaussians as the standard 3DGS .ply.")
    p.add_argument("run", help="run folder written by 'omnifield train --method splat'")
    p.add_argument("--out", help="output .ply (default: RUN/scene.ply)")
    p.set_defaults(func=cmd_export_splat)
