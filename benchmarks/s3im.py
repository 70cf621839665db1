"""S3IM on lego: all training views vs a 10-view subset, each with and without the S3IM loss.

Every run trains the same field preset with the same budget (``--steps`` and/or ``--minutes``); the
baseline of each view count is the run without S3IM (weight 0). PSNR/SSIM on the first
``--eval-views`` test views (on white); seconds of training and the process's peak RSS so far.
The paper (Xie et al. 2023) reports its largest gains with few views. Timings on a shared machine
are pessimistic.

    python benchmarks/s3im.py --quick [--data data/lego_200] [--out rows.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from omnifield.apps.recon.config import TrainConfig
from omnifield.apps.recon.evaluate import evaluate
from omnifield.apps.recon.run import Run
from omnifield.apps.recon.trainer import Trainer
from omnifield.data.blender import PosedImages, load_blender
from omnifield.fields.registry import field_config
from omnifield.renderers.occupancy import OccupancyGridConfig
from omnifield.renderers.volume import VolumeRendererConfig


def subset(data: PosedImages, n: int) -> PosedImages:
    """``n`` views spread evenly over the split (all when ``n`` is 0 or too large)."""
    if n <= 0 or n >= len(data.images):
        return data
    idx = torch.linspace(0, len(data.images) - 1, n).round().long()
    return PosedImages(data.images[idx], data.cameras[idx], [data.names[i] for i in idx.tolist()])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/lego_200")
    p.add_argument("--quick", action="store_true", help="tiny budget (<= 2 min): 50x50 images, 150 steps per run")
    p.add_argument("--out", help="write the table as a JSON list of rows")
    p.add_argument("--method", default="hashgrid")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--minutes", type=float, default=0.0, help="time budget per run (0 = steps only)")
    p.add_argument("--views", default="0,10", help="training-view counts (0 = all)")
    p.add_argument("--weight", type=float, default=1.0, help="S3IM weight (paper: 1.0)")
    p.add_argument("--batch-rays", type=int, default=4096, help="rays per step (fixed: the paper's 4096 = 64 x 64)")
    p.add_argument("--downscale", type=int, default=1)
    p.add_argument("--grid", type=int, default=128, help="occupancy-grid resolution")
    p.add_argument("--eval-views", type=int, default=13)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.quick:
        args.steps, args.downscale, args.grid, args.eval_views, args.batch_rays = 150, 4, 64, 3, 1024
    torch.set_num_threads(args.threads)
    train = load_blender(args.data, "train", args.downscale)
    test = load_blender(args.data, "test", args.downscale)
    rows = []
    print(f"{'views':>5} {'s3im':>5} {'steps':>6} {'seconds':>8} {'PSNR':>7} {'SSIM':>7} {'gain dB':>8} {'RSS MB':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for n_views in [int(v) for v in args.views.split(",")]:
            data = subset(train, n_views)
            base = None
            for weight in (0.0, args.weight):
                torch.manual_seed(args.seed)
                cfg = TrainConfig(steps=args.steps, minutes=args.minutes, seed=args.seed, s3im_weight=weight,
                                  batch_rays=args.batch_rays, target_samples=0, checkpoint_every_s=1e9)
                run = Run.create(Path(tmp) / f"{n_views}-{weight}", args.method, field_config(args.method),
                                 VolumeRendererConfig(grid=OccupancyGridConfig(resolution=args.grid)), cfg, args.data)
                trainer = Trainer(run, data, progress=False)
                t0 = time.perf_counter()
                trainer.fit()
                seconds = time.perf_counter() - t0
                m = evaluate(run, test, limit=args.eval_views, progress=False)
                base = m["psnr"] if base is None else base
                r = {"views": len(data.images), "s3im_weight": weight, "steps": trainer.step,
                     "seconds": round(seconds, 1), "psnr": round(m["psnr"], 2), "ssim": round(m["ssim"], 4),
                     "gain_db": round(m["psnr"] - base, 2),
                     "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
                rows.append(r)
                print(f"{r['views']:>5} {weight:>5} {r['steps']:>6} {r['seconds']:>8.1f} {r['psnr']:>7.2f} "
                      f"{r['ssim']:>7.4f} {r['gain_db']:>+8.2f} {r['peak_rss_mb']:>7}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
