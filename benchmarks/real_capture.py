#!/usr/bin/env python
"""Real-capture benchmark: hash-grid NeRF and 3D Gaussian splats on the same held-out views of a photo capture,
and structure from motion on unposed photos.

Each method runs as users run it (``omnifield train DATA --method M --minutes B``) in its own process, on the
capture's held-out split (every 8th image by name); the table prints method, scene, steps, training seconds,
test PSNR, SSIM, peak memory and evaluation seconds per frame. With ``--photos DIR`` a ``process`` row runs
``omnifield process`` on unposed photos (images registered, mean reprojection error, seconds), and with
``--train-processed`` the methods are then trained on the processed scene too.

    python benchmarks/real_capture.py --data data/fern                     # 10 minutes per method
    python benchmarks/real_capture.py --data data/fern --quick             # <= 2 minutes in total
    python benchmarks/real_capture.py --photos data/kitchen25 --train-processed --downscale 4 --out k.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("hashgrid", "splat")


# runs the CLI, then reports the child's own peak resident memory on its last stderr line
CHILD = ("import resource, sys\nfrom omnifield.cli import main\ncode = main(sys.argv[1:])\n"
         "print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(code)")


def omnifield(*args: str) -> tuple[float, float]:
    """Run ``omnifield ARGS`` in a child process; returns (wall seconds, the child's peak RSS in MB)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"omnifield {' '.join(args)} failed with exit code {proc.returncode}")
    peak_kb = float(proc.stderr.strip().splitlines()[-1].split()[-1])
    return time.perf_counter() - t0, peak_kb / 1024


def train_row(method: str, data: Path, minutes: float, downscale: int, out: Path, extra: list[str]) -> dict:
    """Train ``method`` on ``data`` for ``minutes`` and evaluate it on the held-out views."""
    wall, peak = omnifield("train", str(data), "--method", method, "--minutes", str(minutes), "--steps", str(10**9),
                           "--downscale", str(downscale), "--out", str(out), *extra)
    metrics = json.loads((out / "metrics.json").read_text())
    renderer = json.loads((out / "config.json").read_text()).get("renderer") or {}
    return {
        "method": method, "scene": data.name, "downscale": downscale, "budget_min": minutes,
        **({"sampler": renderer["sampler"]} if "sampler" in renderer else {}),
        "steps": metrics.get("step", metrics.get("steps")),
        "seconds": round(float(metrics.get("train_seconds") or 0.0), 1),
        "psnr": round(float(metrics["psnr"]), 2), "ssim": round(float(metrics["ssim"]), 4),
        "peak_mb": round(peak, 0),
        "eval_s_per_frame": round(float(metrics["seconds_per_frame"]), 2) if "seconds_per_frame" in metrics
        else round(1.0 / float(metrics["render_fps"]), 2) if metrics.get("render_fps") else None,
        "n_views": metrics.get("n_views"), "wall_s": round(wall, 1),
        **({"init_seconds": metrics["init_seconds"]} if "init_seconds" in metrics else {}),
    }


def process_row(photos: Path, out: Path) -> dict:
    """Structure from motion on unposed photos with ``omnifield process``."""
    wall, peak = omnifield("process", str(photos), "--out", str(out), "--quiet")
    report = json.loads((out / "process_report.json").read_text())
    return {"method": "process", "scene": photos.name, "seconds": round(wall, 1), "peak_mb": round(peak, 0),
            "n_registered": report["images_registered"], "n_images": report["images_total"],
            "mean_reprojection_error_px": report["mean_reprojection_error_px"], "n_points": report["points3D"],
            "stage_seconds": report["seconds"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a posed capture (LLFF, COLMAP, transforms.json) to train on")
    parser.add_argument("--photos", type=Path, help="a folder of unposed photos for a 'process' row")
    parser.add_argument("--train-processed", action="store_true", help="also train the methods on the processed photos")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per method (default 10)")
    parser.add_argument("--downscale", type=int, default=1, help="image downscale factor for training (default 1)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument("--quick", action="store_true", help="<= 2 minutes in total: 0.4 minutes per method")
    parser.add_argument("--keep", type=Path, help="keep the run folders under this folder (default: temporary)")
    parser.add_argument("--out", type=Path, help="write the table as a JSON list of rows")
    args = parser.parse_args()
    if not args.data and not args.photos:
        parser.error("give --data, --photos or both")
    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}")
    minutes = 0.4 if args.quick else args.minutes
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if args.photos:
            scene = root / f"{args.photos.name}-processed"
            print(f"processing {args.photos} ...", flush=True)
            rows.append(process_row(args.photos, scene))
            if args.train_processed:
                for m in methods:
                    print(f"training {m} on {scene} for {minutes} min ...", flush=True)
                    row = train_row(m, scene, minutes, args.downscale, root / f"processed-{m}", [])
                    rows.append({**row, "scene": f"{args.photos.name} (processed)"})
        if args.data:
            for m in methods:
                print(f"training {m} on {args.data} for {minutes} min ...", flush=True)
                rows.append(train_row(m, args.data, minutes, args.downscale, root / f"{args.data.name}-{m}", []))
    print(f"\n{'method':10s} {'scene':22s} {'steps':>7s} {'seconds':>8s} {'PSNR':>7s} {'SSIM':>7s} {'peak MB':>8s} "
          f"{'eval s/frame':>12s}")
    for r in rows:
        if r["method"] != "process":
            per_frame = "-" if r["eval_s_per_frame"] is None else f"{r['eval_s_per_frame']:.2f}"
            print(f"{r['method']:10s} {r['scene']:22s} {r['steps']:7d} {r['seconds']:8.1f} {r['psnr']:7.2f} "
                  f"{r['ssim']:7.4f} {r['peak_mb']:8.0f} {per_frame:>12s}")
    for r in rows:
        if r["method"] == "process":
            print(f"process {r['scene']}: {r.get('n_registered')}/{r.get('n_images')} images registered, mean "
                  f"reprojection error {r.get('mean_reprojection_error_px')} px, {r.get('n_points')} points, "
                  f"{r['seconds']:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
