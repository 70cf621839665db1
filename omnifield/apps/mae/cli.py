"""``omnifield mae scenes | render | grid | pretrain | finetune | eval``: NeRF-MAE on radiance-field grids."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from omnifield.cli_options import (
    add_loop_arguments,
    add_new_and_old,
    add_optional_positional,
    loop_config,
    require_given,
)
from omnifield.config import config_from_dict, config_to_dict
from omnifield.config_overrides import apply_section_overrides
from omnifield.errors import OmnifieldError
from omnifield.io.atomic import write_text_atomic
from omnifield.io.run_folder import claim_output

LOG_EVERY = 25

EPILOG = """examples:
  omnifield mae scenes --out grids/pretrain --count 240            # procedural grids, seeds 0..239
  omnifield mae scenes --out grids/labelled --count 48 --first-seed 100000
  omnifield mae render --out scenes/room7 --seed 7 && omnifield train scenes/room7 --method hashgrid --out runs/room7
  omnifield mae grid runs/room7 --out room7.npz --resolution 32    # any trained field -> grid
  omnifield mae pretrain grids/pretrain --out runs/mae --steps 1000
  omnifield mae pretrain grids/pretrain --out runs/mae --steps 2000 --resume   # continue (or extend) it
  omnifield mae finetune grids/labelled --labelled 8 --pretrained runs/mae --out runs/seg
  omnifield mae eval runs/seg grids/labelled --skip 8             # mIoU + figure of predicted labels
  omnifield mae eval runs/mae grids/pretrain --skip 200            # masked-reconstruction PSNR + figure
"""


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise OmnifieldError(f"--{name} must be >= 1, got {value}")
    return value


def _training_configs(args: argparse.Namespace, kind: str, train_cfg: Any,
                      model_cfg: Any) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The typed configs of a training command: ``(train, model, loop)`` from the options, or with
    ``--resume`` the train and model configs of the checkpoint in ``--out`` (its metadata comes fourth,
    else ``{}``); then every ``--set`` (``train.KEY``, ``model.KEY``, ``loop.KEY``). Refuses an ``--out``
    holding a run of another kind."""
    from omnifield.apps.mae.runs import TRAINING_FILE
    from omnifield.apps.mae.train import check_config
    from omnifield.io.checkpoint import load_checkpoint

    claim_output(args.out, f"{kind} model", continues=True)
    meta: dict[str, Any] = {}
    if args.resume:
        path = Path(args.out) / TRAINING_FILE
        if not path.is_file():
            raise OmnifieldError(f"{args.out}: nothing to resume (no {TRAINING_FILE}); train without --resume")
        _, meta = load_checkpoint(path)
        if meta.get("kind") != kind:
            raise OmnifieldError(f"{path}: holds the training of a {meta.get('kind')} model, not of a {kind} model")
        train_cfg = config_from_dict(meta.get("train"), f"{path} train config")
        model_cfg = config_from_dict(meta.get("config"), f"{path} model config")
    roots = apply_section_overrides(
        {"train": train_cfg, "model": model_cfg, "loop": loop_config(args, log_every=LOG_EVERY)}, args.set or [],
        frozen={"model": "a resumed run keeps the model of its checkpoint"} if args.resume else None)
    check_config(roots["train"])
    roots["loop"].check()
    return roots["train"], roots["model"], roots["loop"], meta
def cmd_scenes(args: argparse.Namespace) -> int:
    """Write labelled procedural grids."""
    from omnifield.apps.mae.dataset import write_scene_grids

    for name in ("count", "resolution", "supersample"):
        _positive(name, getattr(args, name))
    require_given(args, "out", "--out (the output folder)")
    claim_output(args.out, "MAE grid folder", continues=True)
    paths = write_scene_grids(args.out, range(args.first_seed, args.first_seed + args.count), args.resolution,
                              args.supersample)
    print(f"{len(paths)} grids in {args.out}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Render one procedural scene as a Blender-format posed-image data set."""
    from omnifield.apps.mae.raycast import write_blender_scene
    from omnifield.apps.mae.scene import generate_scene

    require_given(args, "out", "--out (the output folder)")
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
    require_given(args, "out", "--out (the output .npz file)")
    grid = grid_from_run(args.run, args.resolution, args.supersample, args.max_views)
    save_grid(grid, args.out)
    print(f"grid {list(grid.rgba.shape[1:])} from {args.run} -> {args.out}")
    if args.scene:
        ref = scene_grid(scene_from_json(args.scene), args.resolution, supersample=2)
        print(json.dumps({"vs_analytic_scene": compare_grids(grid, ref)}, indent=1))
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Masked-autoencoder pre-training on a folder of grids (resumable)."""
    from omnifield.apps.mae.dataset import list_grids, load_grid_stack
    from omnifield.apps.mae.figures import loss_figure
    from omnifield.apps.mae.model import MAE3D, MAE3DConfig
    from omnifield.apps.mae.runs import save_model
    from omnifield.apps.mae.train import PretrainConfig, evaluate_reconstruction, pretrain_mae

    train_cfg, model_cfg, loop, _ = _training_configs(
        args, "mae", PretrainConfig(batch_size=args.batch, lr=args.lr, seed=args.seed),
        MAE3DConfig(dim=args.dim, depth=args.depth, heads=args.heads, mask_ratio=args.mask_ratio))
    paths = list_grids(args.data)
    if args.holdout >= len(paths):
        raise OmnifieldError(f"--holdout {args.holdout} leaves no training grids in {args.data} ({len(paths)} files)")
    train_paths = paths[: len(paths) - args.holdout]
    rgba = load_grid_stack(train_paths)
    torch.manual_seed(train_cfg.seed)
    model = MAE3D(model_cfg)
    out = Path(args.out)
    print(f"{'resuming' if args.resume else 'pre-training'} a 3-D ViT MAE "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters) on {len(train_paths)} grids "
          f"{list(rgba.shape[2:])} -> {out}")
    info = {"train": config_to_dict(train_cfg), "train_grids": len(train_paths)}
    history = pretrain_mae(model, rgba, train_cfg, loop, out, info, resume=args.resume)
    metrics = {}
    if args.holdout:
        metrics = evaluate_reconstruction(model, load_grid_stack(paths[len(paths) - args.holdout :]))
        print(json.dumps({"held_out": metrics}))
    save_model(out, model, {"steps": len(history), "train_grids": len(train_paths), "held_out": metrics})
    write_text_atomic(out / "history.json", json.dumps(history))
    loss_figure({"mae": history}, out / "loss.png")
    print(f"saved {out}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a voxel-labelling head and encoder on the first --labelled grids (pre-trained or scratch;
    resumable)."""
    from omnifield.apps.mae.dataset import list_grids, load_grid_stack
    from omnifield.apps.mae.figures import loss_figure
    from omnifield.apps.mae.model import MAE3DConfig
    from omnifield.apps.mae.runs import load_model, save_model, segmenter_from_mae
    from omnifield.apps.mae.scene import CLASS_NAMES
    from omnifield.apps.mae.train import FinetuneConfig, finetune_segmenter

    _positive("labelled", args.labelled)
    mae = None if args.resume or not args.pretrained else load_model(args.pretrained, "mae")[0]
    model_cfg = mae.cfg if mae is not None else MAE3DConfig(dim=args.dim, depth=args.depth, heads=args.heads)
    train_cfg, model_cfg, loop, resumed = _training_configs(
        args, "segmenter", FinetuneConfig(batch_size=args.batch, lr=args.lr, seed=args.seed,
                                          encoder_lr_scale=args.encoder_lr_scale), model_cfg)
    if mae is not None and model_cfg != mae.cfg:
        raise OmnifieldError("--set model.*: the encoder's shape is the pre-trained MAE's")
    paths = list_grids(args.data)[: args.labelled]
    rgba, labels = load_grid_stack(paths, with_labels=True)
    model = segmenter_from_mae(mae, model_cfg, len(CLASS_NAMES), train_cfg.seed)
    start = f"pre-trained encoder {args.pretrained}" if mae is not None else "scratch"
    out = Path(args.out)
    print(f"{f'resuming {out}' if args.resume else f'fine-tuning voxel labelling from {start}'} "
          f"on {len(paths)} labelled grids")
    pretrained = resumed.get("pretrained", "") if args.resume else str(args.pretrained or "")
    info = {"train": config_to_dict(train_cfg), "labelled": len(paths), "pretrained": pretrained}
    history = finetune_segmenter(model, rgba, labels, train_cfg, loop, out, info, resume=args.resume)
    save_model(out, model, {"steps": len(history), "labelled": len(paths), "pretrained": pretrained})
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

    def add(name: str, func, help_text: str, seed_help: str | None = "random seed (default 0)") -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text, description=help_text)
        if seed_help:  # deterministic actions (scenes: --first-seed; grid) take none
            p.add_argument("--seed", type=int, default=0, help=seed_help)
        p.set_defaults(func=func)
        return p

    def model_sizes(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dim", type=int, default=128, help="encoder width (default 128)")
        p.add_argument("--depth", type=int, default=4, help="encoder blocks (default 4)")
        p.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")

    def training_options(p: argparse.ArgumentParser, steps: int) -> None:
        add_loop_arguments(p, steps=steps)
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a setting of the typed configs: train.KEY (batch_size, lr, seed, ...), "
                            "model.KEY (dim, depth, ...) or loop.KEY (log_every, checkpoint_every_s, ...); repeatable")

    p = add("scenes", cmd_scenes, "write labelled grids of procedural rooms", seed_help=None)
    p.add_argument("--out", help="output folder of scene_<seed>.npz files (required)")
    add_optional_positional(p, "out", "OUT", "output folder", old_of="--out")
    p.add_argument("--count", type=int, default=240, help="number of scenes (default 240)")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first scene (default 0)")
    p.add_argument("--resolution", type=int, default=32, help="cells along the longest side (default 32)")
    p.add_argument("--supersample", type=int, default=2, help="sub-samples per voxel and axis (default 2)")

    p = add("render", cmd_render, "render a procedural room as posed images (Blender format)",
            seed_help="seed of the procedural room (default 0)")
    p.add_argument("--out", help="output folder (required)")
    add_optional_positional(p, "out", "OUT", "output folder", old_of="--out")
    p.add_argument("--train-views", type=int, default=60, help="training views (default 60)")
    p.add_argument("--test-views", type=int, default=10, help="held-out test views (default 10)")
    p.add_argument("--size", type=int, default=100, help="image side in pixels (default 100)")

    p = add("grid", cmd_grid, "sample a trained run's field into an RGB/alpha grid", seed_help=None)
    p.add_argument("run", help="run folder written by 'omnifield train'")
    p.add_argument("--out", help="output .npz file (required)")
    add_optional_positional(p, "out", "OUT", "output .npz file", old_of="--out")
    p.add_argument("--resolution", type=int, default=32, help="cells along the longest side (default 32)")
    p.add_argument("--supersample", type=int, default=1, help="sub-samples per voxel and axis (default 1)")
    p.add_argument("--max-views", type=int, default=16, help="training cameras used for colour (default 16)")
    p.add_argument("--scene", help="scene.json of a procedural room: report agreement with its analytic grid")

    p = add("pretrain", cmd_pretrain, "masked-autoencoder pre-training on a folder of grids")
    p.add_argument("data", help="folder of .npz grids")
    p.add_argument("--out", required=True, help="output model folder (with --resume: the run to continue)")
    p.add_argument("--batch", type=int, default=8, help="grids per step (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (default 1e-3)")
    p.add_argument("--mask-ratio", type=float, default=0.75, help="fraction of patch cubes hidden (default 0.75)")
    p.add_argument("--holdout", type=int, default=0, help="last N grids held out for reconstruction PSNR")
    model_sizes(p)
    training_options(p, steps=1000)

    p = add("finetune", cmd_finetune, "fine-tune voxel labelling (from a pre-trained MAE or from scratch)")
    p.add_argument("data", help="folder of labelled .npz grids (the first --labelled are used)")
    p.add_argument("--out", required=True, help="output model folder")
    p.add_argument("--pretrained", help="MAE model folder; omit to train from scratch")
    p.add_argument("--labelled", type=int, default=8, help="number of labelled grids (default 8)")
    p.add_argument("--batch", type=int, default=4, help="grids per step (default 4)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate of the head (default 2e-3)")
    p.add_argument("--encoder-lr-scale", type=float, default=1.0,
                   help="encoder learning rate as a fraction of --lr (0 freezes the encoder; default 1)")
    model_sizes(p)
    training_options(p, steps=300)

    p = add("eval", cmd_eval, "evaluate a model folder on grids and draw a figure")
    p.add_argument("model", help="model folder (MAE or segmenter)")
    p.add_argument("data", help="folder of .npz grids")
    p.add_argument("--skip", type=int, default=0, help="skip the first N grids (e.g. the labelled ones)")
    p.add_argument("--limit", type=int, default=0, help="evaluate at most N grids (0 = all)")
    add_new_and_old(p, "--out", ("--figure",), dest="figure", help="output PNG figure (default <model>/eval.png)")
