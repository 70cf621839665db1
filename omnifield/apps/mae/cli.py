"""``omnifield mae scenes | render | grid | pretrain | finetune | eval``: NeRF-MAE on radiance-field grids."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from omnifield.errors import OmnifieldError
from omnifield.io.atomic import write_text_atomic
from omnifield.io.run_folder import claim_output

EPILOG = """examples:
  omnifield mae scenes grids/pretrain --count 240                  # procedural grids, seeds 0..239
  omnifield mae scenes grids/labelled --count 48 --first-seed 100000
  omnifield mae render scenes/room7 --seed 7 && omnifield train scenes/room7 --method hashgrid --out runs/room7
  omnifield mae grid runs/room7 room7.npz --resolution 32          # any trained field -> grid
  omnifield mae pretrain grids/pretrain --out runs/mae --steps 1000
  omnifield mae finetune grids/labelled --labelled 8 --pretrained runs/mae --out runs/seg
  omnifield mae eval runs/seg grids/labelled --skip 8             # mIoU + figure of predicted labels
  omnifield mae eval runs/mae grids/pretrain --skip 200            # masked-reconstruction PSNR + figure
"""


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise OmnifieldError(f"--{name} must be >= 1, got {value}")
    return value


def _check_training(args: argparse.Namespace, kind: str) -> None:
    """Options of a training command, and its ``--out`` (which must not hold a run of another kind)."""
    _positive("steps", args.steps)
    _positive("batch", args.batch)
    if not args.lr > 0:
        raise OmnifieldError(f"--lr must be > 0, got {args.lr}")
    claim_output(args.out, kind, continues=True)


def cmd_scenes(args: argparse.Namespace) -> int:
    """Write labelled procedural grids."""
    from omnifield.apps.mae.dataset import write_scene_grids

    for name in ("count", "resolution", "supersample"):
        _positive(name, getattr(args, name))
    claim_output(args.out, "MAE grid folder", continues=True)
    torch.set_num_threads(args.threads)
    paths = write_scene_grids(args.out, range(args.first_seed, args.first_seed + args.count), args.resolution,
                              args.supersample)
    print(f"{len(paths)} grids in {args.out}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Render one procedural scene as a Blender-format posed-image data set."""
    from omnifield.apps.mae.raycast import write_blender_scene
    from omnifield.apps.mae.scene import generate_scene

    claim_output(args.out, "procedural scene", continues=True)
    out = write_blender_scene(generate_scene(args.seed), args.out, args.train_views, args.test_views, args.size)
    print(f"scene {args.seed}: {args.train_views} train + {args.test_views} test views ({args.size}px) in {out}")
    return 0


def cmd_grid(args: argparse.Namespace) -> int:
    """Sample a trained reconstruction run into a grid; compare with the analytic scene when known."""
    from omnifield.apps.mae.dataset import scene_grid
    from omnifield.apps.mae.from_run import grid_from_run
    from omnifield.apps.mae.grid import compare_grids, save_grid
    from omnifield.apps.mae.scene import scene_from_json

    for name in ("resolution", "supersample", "max_views"):
        _positive(name.replace("_", "-"), getattr(args, name))

    grid = grid_from_run(args.run, args.resolution, args.supersample, args.max_views)
    save_grid(grid, args.out)
    print(f"grid {list(grid.rgba.shape[1:])} from {args.run} -> {args.out}")
    if args.scene:
        ref = scene_grid(scene_from_json(args.scene), args.resolution, supersample=2)
        print(json.dumps({"vs_analytic_scene": compare_grids(grid, ref)}, indent=1))
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Masked-autoencoder pre-training on a folder of grids."""
    from omnifield.apps.mae.dataset import list_grids, load_grid_stack
    from omnifield.apps.mae.figures import loss_figure
    from omnifield.apps.mae.model import MAE3D, MAE3DConfig
    from omnifield.apps.mae.runs import save_model
    from omnifield.apps.mae.train import evaluate_reconstruction, pretrain_mae

    _check_training(args, "mae model")
    torch.set_num_threads(args.threads)
    paths = list_grids(args.data)
    if args.holdout >= len(paths):
        raise OmnifieldError(f"--holdout {args.holdout} leaves no training grids in {args.data} ({len(paths)} files)")
    train_paths = paths[: len(paths) - args.holdout]
    rgba = load_grid_stack(train_paths)
    cfg = MAE3DConfig(dim=args.dim, depth=args.depth, heads=args.heads, mask_ratio=args.mask_ratio)
    torch.manual_seed(args.seed)
    model = MAE3D(cfg)
    print(f"pre-training a 3-D ViT MAE ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters) "
          f"on {len(train_paths)} grids {list(rgba.shape[2:])}")
    history = pretrain_mae(model, rgba, _positive("steps", args.steps), args.batch, args.lr, args.seed)
    metrics = {}
    if args.holdout:
        metrics = evaluate_reconstruction(model, load_grid_stack(paths[len(paths) - args.holdout :]))
        print(json.dumps({"held_out": metrics}))
    out = Path(args.out)
    save_model(out, model, {"steps": args.steps, "train_grids": len(train_paths), "held_out": metrics})
    write_text_atomic(out / "history.json", json.dumps(history))
    loss_figure({"mae": history}, out / "loss.png")
    print(f"saved {out}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a voxel-labelling head and encoder on the first --labelled grids (pre-trained or scratch)."""
    from omnifield.apps.mae.dataset import list_grids, load_grid_stack
    from omnifield.apps.mae.figures import loss_figure
    from omnifield.apps.mae.model import MAE3DConfig
    from omnifield.apps.mae.runs import load_model, save_model, segmenter_from_mae
    from omnifield.apps.mae.scene import CLASS_NAMES
    from omnifield.apps.mae.train import finetune_segmenter

    _check_training(args, "segmenter model")
    _positive("labelled", args.labelled)
    torch.set_num_threads(args.threads)
    paths = list_grids(args.data)[: args.labelled]
    rgba, labels = load_grid_stack(paths, with_labels=True)
    mae = load_model(args.pretrained, "mae")[0] if args.pretrained else None
    cfg = mae.cfg if mae is not None else MAE3DConfig(dim=args.dim, depth=args.depth, heads=args.heads)
    model = segmenter_from_mae(mae, cfg, len(CLASS_NAMES), args.seed)
    start = f"pre-trained encoder {args.pretrained}" if mae is not None else "scratch"
    print(f"fine-tuning voxel labelling from {start} on {len(paths)} labelled grids")
    history = finetune_segmenter(model, rgba, labels, _positive("steps", args.steps), args.batch, args.lr, args.seed,
                                 encoder_lr_scale=args.encoder_lr_scale)
    out = Path(args.out)
    save_model(out, model, {"steps": args.steps, "labelled": len(paths), "pretrained": str(args.pretrained or "")})
    write_text_atomic(out / "history.json", json.dumps(history))
    loss_figure({"finetune": history}, out / "loss.png")
    print(f"saved {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a model folder on grids: reconstruction PSNR (MAE) or mIoU (segmenter), plus a PNG figure."""
    from omnifield.apps.mae.dataset import list_grids, load_grid_stack
    from omnifield.apps.mae.figures import labels_figure, reconstruction_figure
    from omnifield.apps.mae.model import unpatchify
    from omnifield.apps.mae.runs import load_model
    from omnifield.apps.mae.scene import CLASS_NAMES
    from omnifield.apps.mae.train import evaluate_reconstruction, predict_labels, segmentation_scores

    if args.skip < 0 or args.limit < 0:
        raise OmnifieldError(f"--skip and --limit must be >= 0, got {args.skip} and {args.limit}")
    torch.set_num_threads(args.threads)
    model, meta = load_model(args.model)
    paths = list_grids(args.data)[args.skip :][: args.limit or None]
    if not paths:
        raise OmnifieldError(f"{args.data}: no grids left after --skip {args.skip}")
    figure = Path(args.figure) if args.figure else Path(args.model) / "eval.png"
    if meta["kind"] == "mae":
        rgba = load_grid_stack(paths)
        result = evaluate_reconstruction(model, rgba, seed=args.seed)
        show = rgba[:3]
        with torch.no_grad():
            pred, mask = model(show, torch.Generator().manual_seed(args.seed))
        spatial, p = tuple(show.shape[2:]), model.cfg.patch
        hidden = unpatchify(mask[..., None].float().expand(-1, -1, p**3), spatial, p)
        recon = hidden * unpatchify(pred, spatial, p) + (1 - hidden) * show  # visible cubes shown as given
        reconstruction_figure(show * (1 - hidden), recon, show, figure)
    else:
        rgba, labels = load_grid_stack(paths, with_labels=True)
        pred = predict_labels(model, rgba)
        result = segmentation_scores(pred, labels, model.n_classes)
        result["iou"] = dict(zip(CLASS_NAMES, result["iou"]))
        labels_figure(rgba[:3], pred[:3], labels[:3], figure)
    result["grids"] = len(paths)
    print(json.dumps(result, indent=1))
    print(f"figure: {figure}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``omnifield mae ...`` to the top-level parser."""
    mae = sub.add_parser("mae", help="NeRF-MAE: grids of radiance fields, masked pre-training, voxel labelling",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = mae.add_subparsers(dest="mae_command", metavar="ACTION", required=True)

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.set_defaults(func=func)
        return p

    def model_sizes(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dim", type=int, default=128, help="encoder width (default 128)")
        p.add_argument("--depth", type=int, default=4, help="encoder blocks (default 4)")
        p.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")

    p = add("scenes", cmd_scenes, "write labelled grids of procedural rooms")
    p.add_argument("out", help="output folder of scene_<seed>.npz files")
    p.add_argument("--count", type=int, default=240, help="number of scenes (default 240)")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first scene (default 0)")
    p.add_argument("--resolution", type=int, default=32, help="cells along the longest side (default 32)")
    p.add_argument("--supersample", type=int, default=2, help="sub-samples per voxel and axis (default 2)")

    p = add("render", cmd_render, "render a procedural room as posed images (Blender format)")
    p.add_argument("out", help="output folder")
    p.add_argument("--train-views", type=int, default=60)
    p.add_argument("--test-views", type=int, default=10)
    p.add_argument("--size", type=int, default=100, help="image side in pixels (default 100)")

    p = add("grid", cmd_grid, "sample a trained run's field into an RGB/alpha grid")
    p.add_argument("run", help="run folder written by 'omnifield train'")
    p.add_argument("out", help="output .npz file")
    p.add_argument("--resolution", type=int, default=32, help="cells along the longest side (default 32)")
    p.add_argument("--supersample", type=int, default=1, help="sub-samples per voxel and axis (default 1)")
    p.add_argument("--max-views", type=int, default=16, help="training cameras used for colour (default 16)")
    p.add_argument("--scene", help="scene.json of a procedural room: report agreement with its analytic grid")

    p = add("pretrain", cmd_pretrain, "masked-autoencoder pre-training on a folder of grids")
    p.add_argument("data", help="folder of .npz grids")
    p.add_argument("--out", required=True, help="output model folder")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--mask-ratio", type=float, default=0.75)
    p.add_argument("--holdout", type=int, default=0, help="last N grids held out for reconstruction PSNR")
    model_sizes(p)

    p = add("finetune", cmd_finetune, "fine-tune voxel labelling (from a pre-trained MAE or from scratch)")
    p.add_argument("data", help="folder of labelled .npz grids (the first --labelled are used)")
    p.add_argument("--out", required=True, help="output model folder")
    p.add_argument("--pretrained", help="MAE model folder; omit to train from scratch")
    p.add_argument("--labelled", type=int, default=8, help="number of labelled grids (default 8)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--encoder-lr-scale", type=float, default=1.0,
                   help="encoder learning rate as a fraction of --lr (0 freezes the encoder; default 1)")
    model_sizes(p)

    p = add("eval", cmd_eval, "evaluate a model folder on grids and draw a figure")
    p.add_argument("model", help="model folder (MAE or segmenter)")
    p.add_argument("data", help="folder of .npz grids")
    p.add_argument("--skip", type=int, default=0, help="skip the first N grids (e.g. the labelled ones)")
    p.add_argument("--limit", type=int, default=0, help="evaluate at most N grids (0 = all)")
    p.add_argument("--figure", help="PNG path (default <model>/eval.png)")
