"""NeRF-MAE on procedural rooms: masked pre-training, reconstruction PSNR, and voxel labelling with few labels.

Pre-trains the 3-D ViT MAE on procedural grids, measures masked reconstruction on
held-out grids (baseline in the same run: the per-voxel mean grid of the training
set), then, for each count in ``label_counts``, fine-tunes voxel labelling on that many
labelled scenes three ways -- from scratch, from the pre-trained encoder (all weights
trained), and on the frozen pre-trained encoder (a probe of what its features hold) --
same steps, seed and head, and reports mIoU on held-out scenes. Sized for 2 CPU cores:
the full setting takes about 12 min on an idle machine, ``--quick`` <= 2 min. "CPU s" is
process CPU time (all threads); on a shared machine it estimates the idle cost better than wall time.

    python benchmarks/mae.py --quick
    python benchmarks/mae.py --data outputs/mae-grids --out outputs/mae.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from omnifield.apps.mae.dataset import load_grid_stack, write_scene_grids
from omnifield.apps.mae.model import MAE3D, MAE3DConfig
from omnifield.apps.mae.runs import segmenter_from_mae
from omnifield.apps.mae.scene import CLASS_NAMES
from omnifield.apps.mae.train import (
    FinetuneConfig,
    PretrainConfig,
    evaluate_reconstruction,
    finetune_segmenter,
    predict_labels,
    pretrain_mae,
    segmentation_scores,
)
from omnifield.engine import LoopConfig
from omnifield.metrics import psnr_from_mse

FULL = dict(resolution=24, pretrain_scenes=400, heldout_scenes=24, label_counts="4,16", eval_scenes=32,
            dim=128, depth=4, decoder_dim=96, pretrain_steps=3000, pretrain_batch=8, pretrain_lr=1e-3,
            finetune_steps=600, finetune_batch=4, finetune_lr=2e-3)
QUICK = dict(resolution=16, pretrain_scenes=32, heldout_scenes=4, label_counts="2,4", eval_scenes=8,
             dim=64, depth=2, decoder_dim=48, pretrain_steps=80, pretrain_batch=8, pretrain_lr=2e-3,
             finetune_steps=60, finetune_batch=4, finetune_lr=2e-3)
FINETUNES = (("scratch", False, 1.0), ("pre-trained", True, 1.0), ("pre-trained, frozen", True, 0.0))
SEEDS = {"pretrain": 0, "heldout": 50_000, "labelled": 60_000, "eval": 70_000}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mean_grid_baseline(train: torch.Tensor, held_out: torch.Tensor, cfg: MAE3DConfig, seed: int) -> dict:
    """Masked-reconstruction scores of predicting the training set's per-voxel mean for every hidden voxel."""
    from omnifield.apps.mae.model import masked_reconstruction_loss, patchify, random_token_mask

    mean = train.mean(0, keepdim=True).expand_as(held_out)
    target, pred = patchify(held_out, cfg.patch), patchify(mean, cfg.patch)
    _, mask = random_token_mask(held_out.shape[0], target.shape[1], cfg.mask_ratio, torch.Generator().manual_seed(seed))
    terms = masked_reconstruction_loss(pred, target, mask, cfg.occupied_alpha)
    return {"psnr_rgb": psnr_from_mse(terms["rgb"]), "psnr_alpha": psnr_from_mse(terms["alpha"]),
            "loss": float(terms["loss"])}


def grids(folder: Path, name: str, count: int, resolution: int) -> list[Path]:
    return write_scene_grids(folder / f"{name}-{resolution}", range(SEEDS[name], SEEDS[name] + count), resolution)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small setting (<= 2 min)")
    parser.add_argument("--data", help="folder caching the generated grids (default: a temporary folder)")
    parser.add_argument("--out", help="write the table as a JSON list of rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a setting ({', '.join(FULL)})")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    s = dict(QUICK if args.quick else FULL)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in s:
            parser.error(f"--set {item}: unknown setting {key!r}")
        s[key] = type(s[key])(value)
    tmp = None if args.data else tempfile.TemporaryDirectory()
    folder = Path(args.data or tmp.name)
    rows: list[dict] = []

    t0, c0 = time.perf_counter(), time.process_time()
    pre = load_grid_stack(grids(folder, "pretrain", s["pretrain_scenes"], s["resolution"]))
    held = load_grid_stack(grids(folder, "heldout", s["heldout_scenes"], s["resolution"]))
    counts = sorted(int(c) for c in str(s["label_counts"]).split(","))
    lab, lab_y = load_grid_stack(grids(folder, "labelled", counts[-1], s["resolution"]), with_labels=True)
    ev, ev_y = load_grid_stack(grids(folder, "eval", s["eval_scenes"], s["resolution"]), with_labels=True)
    rows.append({"stage": "data", "what": f"{len(pre) + len(held) + len(lab) + len(ev)} grids {s['resolution']}^3",
                 "seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1)})

    cfg = MAE3DConfig(dim=s["dim"], depth=s["depth"], decoder_dim=s["decoder_dim"])
    torch.manual_seed(args.seed)
    mae = MAE3D(cfg)
    untrained = evaluate_reconstruction(mae, held, seed=args.seed + 1)
    t0, c0 = time.perf_counter(), time.process_time()
    history = pretrain_mae(mae, pre, PretrainConfig(s["pretrain_batch"], s["pretrain_lr"], args.seed),
                           LoopConfig(steps=s["pretrain_steps"]))
    pretrain_s, pretrain_cpu = time.perf_counter() - t0, time.process_time() - c0
    recon = evaluate_reconstruction(mae, held, seed=args.seed + 1)
    for name, scores, seconds, cpu in (
        ("mean-grid baseline", mean_grid_baseline(pre, held, cfg, args.seed + 1), 0.0, 0.0),
        ("MAE untrained", untrained, 0.0, 0.0),
        ("MAE pre-trained", recon, pretrain_s, pretrain_cpu),
    ):
        rows.append({"stage": "reconstruction", "what": name, "psnr_rgb": round(scores["psnr_rgb"], 2),
                     "psnr_alpha": round(scores["psnr_alpha"], 2), "loss": round(scores["loss"], 5),
                     "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1)})
    rows[-1]["train_loss_first_last"] = [round(history[0]["loss"], 4), round(history[-1]["loss"], 4)]

    for count in counts:
        for name, pretrained, encoder_lr_scale in FINETUNES:
            model = segmenter_from_mae(mae if pretrained else None, cfg, len(CLASS_NAMES), args.seed)
            t0, c0 = time.perf_counter(), time.process_time()
            finetune_segmenter(model, lab[:count], lab_y[:count],
                               FinetuneConfig(s["finetune_batch"], s["finetune_lr"], args.seed, encoder_lr_scale),
                               LoopConfig(steps=s["finetune_steps"]))
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            scores = segmentation_scores(predict_labels(model, ev), ev_y, len(CLASS_NAMES))
            rows.append({"stage": "voxel labelling", "what": f"{name} ({count} labelled)",
                         "miou": round(scores["miou"], 4), "fg_accuracy": round(scores["fg_accuracy"], 4),
                         "iou": {c: round(v, 3) for c, v in zip(CLASS_NAMES[1:], scores["iou"][1:])},
                         "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1)})
    for row in rows:
        row["peak_rss_mb"] = round(peak_rss_mb())
    print_table(rows, s)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


def print_table(rows: list[dict], setting: dict) -> None:
    print("setting: " + ", ".join(f"{k}={v}" for k, v in setting.items()))
    print(f"{'stage':<16} {'what':<32} {'PSNR rgb':>9} {'PSNR a':>7} {'mIoU':>7} {'fg acc':>7} {'wall s':>8} "
          f"{'CPU s':>8} {'RSS MB':>7}")
    for r in rows:
        def f(key, fmt):
            return format(r[key], fmt) if key in r else "-"
        print(f"{r['stage']:<16} {r['what']:<32} {f('psnr_rgb', '9.2f'):>9} {f('psnr_alpha', '7.2f'):>7} "
              f"{f('miou', '7.4f'):>7} {f('fg_accuracy', '7.4f'):>7} {r['seconds']:>8.1f} {r['cpu_seconds']:>8.1f} "
              f"{r['peak_rss_mb']:>7}")


if __name__ == "__main__":
    sys.exit(main())
