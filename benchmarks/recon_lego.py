#!/usr/bin/env python
"""Reconstruction benchmark: hash grid + occupancy grid vs vanilla NeRF at the same wall-clock budget.

Each method trains in its own subprocess (so peak memory is its own) for ``--minutes`` of training
time on a Blender-format scene, is evaluated on every test view at several time marks, and the
table prints method, steps, seconds, test PSNR, SSIM, peak memory and samples per ray; then the
hash encoding's forward+backward throughput (native kernel vs its torch twin, same run).

    python benchmarks/recon_lego.py                  # 10 minutes per method on data/lego_200
    python benchmarks/recon_lego.py --quick          # <= 2 minutes in total
    python benchmarks/recon_lego.py --data DIR --minutes 3 --out table.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

METHODS = {
    # name -> (field preset, renderer sampler, extra config overrides)
    "hashgrid+occgrid": ("hashgrid", "occupancy", []),
    "nerf-mlp-uniform": ("mlp", "uniform", ["renderer.n_samples=64", "train.lr=5e-4", "train.batch_rays=1024",
                                                  "train.target_samples=0"]),
}


def run_method(name: str, data: Path, minutes: float, marks: list[float], eval_views: int | None,
               mark_views: int | None, downscale: int, seed: int) -> dict:
    """Train and evaluate one method in this process; returns its row and PSNR-vs-time curve.

    The final row uses ``eval_views`` test views (None = all); the time marks use ``mark_views``.
    """
    from omnifield.apps.recon.cli import build_configs
    from omnifield.apps.recon.evaluate import evaluate
    from omnifield.apps.recon.run import Run
    from omnifield.apps.recon.trainer import Trainer
    from omnifield.data.blender import load_blender

    preset, sampler, overrides = METHODS[name]
    torch.manual_seed(seed)
    ns = argparse.Namespace(method=preset, steps=10**9, minutes=minutes, lr=1e-2, batch_rays=4096,
                            target_samples=1 << 16, seed=seed, grad_clip=0.0, s3im_weight=0.0, sampler=sampler,
                            camera_opt="auto", appearance_dim=-1, set=overrides)
    field_cfg, renderer_cfg, train_cfg = build_configs(ns)
    train = load_blender(data, "train", downscale)
    test = load_blender(data, "test", downscale)
    with tempfile.TemporaryDirectory() as tmp:
        run = Run.create(Path(tmp), preset, field_cfg, renderer_cfg, train_cfg, str(data), downscale)
        curve = []

        def eval_fn(r, step):
            m = evaluate(r, test, limit=mark_views, progress=False)
            curve.append({"seconds": round(trainer.elapsed, 1), "step": step, "psnr": m["psnr"]})
            return {"psnr": m["psnr"]}

        trainer = Trainer(run, train, eval_fn=eval_fn, eval_at_seconds=tuple(marks), progress=False)
        trainer.fit()
        final = evaluate(run, test, limit=eval_views, progress=False)
    return {
        "method": name,
        "steps": trainer.step,
        "seconds": round(trainer.elapsed, 1),
        "psnr": round(final["psnr"], 2),
        "ssim": round(final["ssim"], 4),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "samples_per_ray": round(final["samples_per_ray"], 1),
        "params_m": round(sum(p.numel() for p in run.field.parameters()) / 1e6, 2),
        "psnr_vs_time": curve,
    }


def hash_throughput(n_points: int, repeats: int) -> list[dict]:
    """Forward+backward points/s of the default hash encoding: native kernel vs pure-torch twin."""
    from omnifield.fields.hashgrid import HashGrid, HashGridConfig, _hash_encode, hash_encode

    grid = HashGrid(3, HashGridConfig())
    x = torch.rand(n_points, 3)
    rows = []
    for label, fn in (("native", hash_encode), ("torch twin", _hash_encode)):
        def once():
            out = fn(x, grid.table, grid.resolutions, grid.offsets, grid.sizes, grid.dense)
            out.backward(torch.ones_like(out))
        once()
        t0 = time.perf_counter()
        for _ in range(repeats if label == "native" else 1):
            once()
        dt = (time.perf_counter() - t0) / (repeats if label == "native" else 1)
        rows.append({"method": f"hash encoding fwd+bwd ({label})", "mpts_per_s": round(n_points / dt / 1e6, 3)})
    rows[0]["speedup"] = round(rows[0]["mpts_per_s"] / rows[1]["mpts_per_s"], 1)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "lego_200", help="Blender-format scene")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per method (default 10)")
    parser.add_argument("--quick", action="store_true", help="<= 2 minutes in total: 0.6 min per method, 3 views")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument("--short-minutes", type=float, default=3.0,
                        help="also train the hash grid with this shorter budget, its schedule fitted to it "
                             "(0 = skip; default 3)")
    parser.add_argument("--downscale", type=int, default=1, help="image downscale factor")
    parser.add_argument("--mark-views", type=int, default=4,
                        help="test views evaluated at the 1/3/5-minute marks (the final row uses all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the table as a JSON list of rows")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    minutes = 0.6 if args.quick else args.minutes
    marks = [m * 60 for m in (1, 3, 5, 10) if m < minutes] if not args.quick else []
    eval_views = 3 if args.quick else None
    if args.single:
        row = run_method(args.single, args.data, minutes, marks, eval_views, min(args.mark_views, eval_views or 10**9),
                         args.downscale, args.seed)
        print(json.dumps(row))
        return 0
    names = args.methods.split(",")
    for name in names:
        if name not in METHODS:
            parser.error(f"unknown method {name!r}")
    jobs = [(name, minutes) for name in names]
    if not args.quick and 0 < args.short_minutes < minutes and "hashgrid+occgrid" in names:
        jobs.insert(1, ("hashgrid+occgrid", args.short_minutes))
    rows = []
    for name, budget in jobs:
        cmd = [sys.executable, __file__, "--single", name, "--data", str(args.data), "--minutes", str(budget),
               "--downscale", str(args.downscale), "--seed", str(args.seed), "--mark-views", str(args.mark_views)] + (["--quick"] if args.quick else [])
        print(f"training {name} for {budget} min ...", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["budget_min"] = budget
        rows.append(row)
    rows += hash_throughput(1 << 16 if args.quick else 1 << 18, 2 if args.quick else 5)

    print(f"\n{'method':26s} {'budget':>6s} {'steps':>6s} {'seconds':>8s} {'PSNR':>7s} {'SSIM':>7s} {'peak MB':>8s} "
          f"{'samples/ray':>11s} {'params M':>8s}")
    for r in rows:
        if "psnr" in r:
            print(f"{r['method']:26s} {r['budget_min']:5.1f}m {r['steps']:6d} {r['seconds']:8.1f} {r['psnr']:7.2f} {r['ssim']:7.4f} "
                  f"{r['peak_mb']:8.0f} {r['samples_per_ray']:11.1f} {r['params_m']:8.2f}")
    print(f"\nPSNR against training time (first {args.mark_views} test views; evaluation time not counted):")
    for r in rows:
        if r.get("psnr_vs_time"):
            print(f"  {r['method']:26s} {r['budget_min']:5.1f}m " + "  ".join(f"{p['seconds']:.0f}s: {p['psnr']:.2f} dB" for p in r["psnr_vs_time"]))
    print()
    for r in rows:
        if "mpts_per_s" in r:
            extra = f"  ({r['speedup']}x the twin)" if "speedup" in r else ""
            print(f"{r['method']:40s} {r['mpts_per_s']:8.3f} M points/s{extra}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
