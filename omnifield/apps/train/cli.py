"""``omnifield train``: claims the run folder, then trains a radiance field (:mod:`omnifield.apps.recon`)
or, with ``--method splat``, Gaussians (:mod:`omnifield.apps.splat`).

The dispatch lives here, above both apps, so that neither imports the other for it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from omnifield.apps.recon.cli import add_train_arguments, train_nerf
from omnifield.apps.splat import add_splat_arguments, splat_configs, train_splat
from omnifield.cli_options import declare_applicability, declare_run_settings, options_of, refuse_inapplicable
from omnifield.fields.registry import field_names
from omnifield.io.run_folder import claim_output, describe_output

SPLAT = "splat"
# Options of the radiance-field trainer that splat training has no use for (the splat ones are their own group).
FIELD_ONLY = ("lr", "batch_rays", "target_samples", "sampler", "scene_type", "camera_opt", "appearance_dim",
              "distortion_weight", "loss_depth_weight")

EPILOG = """examples:
  omnifield train data/lego_200 --method hashgrid --minutes 4 --out outputs/lego
  omnifield train data/lego_200 --out outputs/lego --steps 4000 --resume
  omnifield train data/lego_200 --method mlp --set field.density_decoder.width=256
  omnifield train data/lego_200 --method splat --minutes 4 --out outputs/lego-splat
  omnifield eval outputs/lego
  torchrun --nproc_per_node 2 -m omnifield train data/lego_200 --out outputs/lego-ddp   # data parallel
  omnifield render outputs/lego --orbit --frames 90
"""


def claim_run_folder(args: argparse.Namespace) -> None:
    """Settle ``args.method`` and ``args.out`` and refuse an ``--out`` holding a run of another kind or method.

    Without ``--method``, ``--resume`` continues whatever run ``--out`` holds, NeRF or splat (else: hashgrid).
    """
    found = describe_output(args.out) if args.out else None
    if args.method is None:
        resumable = args.resume and found is not None and (found.endswith(" NeRF run") or found == f"{SPLAT} run")
        args.method = found.split()[0] if resumable else "hashgrid"
    args.out = args.out or f"outputs/{Path(args.data).name}-{args.method}"
    kind = f"{SPLAT} run" if args.method == SPLAT else f"{args.method} NeRF run"
    claim_output(args.out, kind, continues=args.resume, hint="pass --resume to continue it")


def cmd_train(args: argparse.Namespace) -> int:
    """Train a field (or, with ``--method splat``, Gaussians) on posed images, then evaluate on the test split."""
    torch.manual_seed(args.seed)
    if args.viewer:  # its options are checked before any work
        from omnifield.apps.viewer.live import check_viewer_options

        check_viewer_options(args.port, args.viewer_width)
    claim_run_folder(args)
    refuse_inapplicable(args, args.method)
    if args.method == SPLAT:
        cfg, loop = splat_configs(args)
        train_splat(Path(args.data), Path(args.out), cfg, loop, device=args.device, resume=args.resume,
                    watch=_viewer(args, splat=True))
        return 0
    return train_nerf(args, _viewer(args, splat=False))


def _viewer(args: argparse.Namespace, splat: bool):
    """With ``--viewer``: a factory ``watch(trained, engine)`` serving what is trained (a radiance-field run, or
    the Gaussians with ``splat``) to the browser while ``engine`` runs (else None)."""
    if not args.viewer:
        return None
    from omnifield.apps.viewer.live import watch_training
    from omnifield.apps.viewer.server import field_render, splat_render

    render_of = splat_render if splat else field_render
    return lambda trained, engine: watch_training(render_of(trained), engine, args.host, args.port, args.viewer_width)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    p = sub.add_parser("train", help="train a radiance field or Gaussians on posed images",
                       description="Train a radiance field (or, with --method splat, Gaussians) on posed images, then "
                                   "evaluate it on the held-out views.\nReads Blender/NeRF-synthetic folders, "
                                   "Instant-NGP/nerfstudio transforms.json, COLMAP models and LLFF poses_bounds.npy "
                                   "(omnifield process makes one from photos or a video).\nWrites checkpoint, "
                                   "config, metrics.json, log.jsonl, curves.png and renders to --out.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(p)
    splat_group = add_splat_arguments(p)
    declare_applicability(p, {**{dest: frozenset(field_names()) for dest in FIELD_ONLY},
                              **options_of(splat_group, {SPLAT})}, choices=[*field_names(), SPLAT])
    g = p.add_argument_group("live viewer")
    g.add_argument("--viewer", action="store_true",
                   help="serve the scene being trained to the browser (viser); frames are rendered between "
                        "training steps, off the training clock, taking at most 10%% of the wall time")
    g.add_argument("--host", default="127.0.0.1", help="viewer interface to listen on (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=8080, help="viewer port (default 8080; 0 = any free port)")
    g.add_argument("--viewer-width", type=int, default=256,
                   help="width of the viewer's finest frame in pixels (default 256)")
    # what --resume may change; every other option is the run's setting (refused when it differs)
    declare_run_settings(p, {"method", "out", "steps", "minutes", "device", "resume", "no_eval", "quiet", "log", "set",
                             "viewer", "host", "port", "viewer_width", "threads"})
    p.set_defaults(func=cmd_train)
