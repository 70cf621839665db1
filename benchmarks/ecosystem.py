"""Readers and exports: scene loading time, cost of lens undistortion, mesh / point export of a field.

Baselines in the same run: pinhole ray generation (vs. undistorted rays) and an analytic ball density
(vs. a trained field given with --run). Prints a table; --out writes it as JSON rows.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from omnifield.data.scene import load_scene
from omnifield.io.mesh import extract_mesh
from omnifield.io.points import sample_dense_points
from omnifield.renderers.cameras import Cameras


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def ray_rows(n_rays: int) -> list[dict]:
    base = Cameras(torch.eye(4)[None], *(torch.tensor([v]) for v in (400.0, 400.0, 400.0, 300.0)), 800, 600)
    distorted = Cameras(base.c2w, base.fx, base.fy, base.cx, base.cy, 800, 600,
                        distortion=torch.tensor([[-0.2, 0.05, 0.0, 0.0, 0.001, 0.001]]))
    px, py = torch.rand(n_rays) * 800, torch.rand(n_rays) * 600
    idx = torch.zeros(n_rays, dtype=torch.long)
    rows = []
    for name, cams in (("pinhole (baseline)", base), ("radial-tangential", distorted)):
        _, seconds = timed(lambda: cams.generate_rays(idx, px, py))
        rows.append({"task": "ray generation", "variant": name, "seconds": seconds, "items": n_rays,
                     "throughput_per_s": n_rays / seconds})
    return rows


def export_rows(density, color, aabb, name: str, resolution: int, n_points: int, threshold: float) -> list[dict]:
    mesh, t_mesh = timed(lambda: extract_mesh(density, aabb, resolution, threshold, color))
    (xyz, _), t_pts = timed(lambda: sample_dense_points(density, aabb, n_points, threshold, color, resolution))
    return [{"task": f"mesh {resolution}^3", "variant": name, "seconds": t_mesh, "items": len(mesh.faces),
             "throughput_per_s": resolution**3 / t_mesh},
            {"task": f"points {resolution}^3", "variant": name, "seconds": t_pts, "items": len(xyz),
             "throughput_per_s": len(xyz) / t_pts}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (well under 2 minutes)")
    parser.add_argument("--data", help="a capture folder to time load_scene on")
    parser.add_argument("--run", help="a trained run folder to export")
    parser.add_argument("--threshold", type=float, default=10.0, help="density iso-level for --run (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable on a shared machine)")
    parser.add_argument("--out", help="write the table as JSON rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    resolution, n_points, n_rays = (64, 20_000, 200_000) if args.quick else (128, 200_000, 1_000_000)
    rows = ray_rows(n_rays)
    aabb = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
    ball = lambda x: 100 * torch.sigmoid((0.5 - x.norm(dim=-1)) * 60)  # noqa: E731
    rows += export_rows(ball, lambda x, d: (x + 1) / 2, aabb, "analytic ball (baseline)", resolution, n_points, 50.0)
    if args.run:
        import omnifield.apps.recon.config  # noqa: F401 - registers the train config type
        from omnifield.apps.recon.run import Run

        run, _, _ = Run.open(args.run)
        run.field.eval()
        rows += export_rows(run.field.density, lambda x, d: run.field(x, d)[0], run.field.aabb, f"run {args.run}",
                            resolution, n_points, args.threshold)
    if args.data:
        scene, seconds = timed(lambda: load_scene(args.data, "train"))
        rows.append({"task": "load_scene train", "variant": args.data, "seconds": seconds,
                     "items": len(scene.images), "throughput_per_s": len(scene.images) / seconds})
    print(f"{'task':<20} {'variant':<28} {'seconds':>9} {'items':>9} {'per second':>12}")
    for r in rows:
        print(f"{r['task']:<20} {r['variant'][:28]:<28} {r['seconds']:>9.3f} {r['items']:>9} {r['throughput_per_s']:>12.0f}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
