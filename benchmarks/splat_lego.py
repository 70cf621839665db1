"""Gaussian splatting on lego (200x200, CPU): vanilla 3DGS vs Compact-3DGS vs the hash-grid NeRF, same time budget.

Rows, one training run each under the same wall-clock budget (``--minutes``): test PSNR / SSIM
(13 views on white), number of Gaussians, MB on disk (3DGS: the standard .ply; Compact-3DGS: the
compressed file; NeRF: its checkpoint), train time, render frames/s at 200x200. Then kernel rows,
native kernel vs the pure-torch twin (the baseline), forward and forward+backward: one 200x200 frame
of 100k random screen-space Gaussians (rasterizer), and the EWA projection of 100k random Gaussians
from scales and quaternions. A side-by-side picture GT | NeRF | 3DGS | Compact of test
view 0 goes to ``--picture``.

    python benchmarks/splat_lego.py [--quick] [--data data/lego_200] [--minutes 10] [--out rows.json]

``--device cuda`` trains on a GPU (gsplat / nerfacc when installed). ``--methods`` runs a subset; with
``--reuse OLD.json --work SAME_FOLDER`` the other rows (and their pictures) come from an earlier run,
e.g. to measure Compact-3DGS again after a change to it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from omnifield.apps.splat import SplatTrainConfig, train_splat
from omnifield.engine import LoopConfig
from omnifield.fields.gaussians import build_covariances
from omnifield.renderers.splat.projection import project_gaussians, project_splats
from omnifield.renderers.splat.rasterize import _rasterize_to_pixels, rasterize_to_pixels


def splat_configs(minutes: float, compact: bool, seed: int, extra: dict) -> tuple[SplatTrainConfig, LoopConfig]:
    """The splat settings (``extra``: fields of :class:`SplatTrainConfig`) and a budget of ``minutes``."""
    return SplatTrainConfig(compact=compact, seed=seed, **extra), LoopConfig(minutes=minutes)


def run_nerf(data: Path, out: Path, minutes: float, eval_views: int, device: str) -> dict:
    """The foundation's hash-grid NeRF through the CLI, same budget, evaluated on the first test views."""
    from omnifield.apps.recon.evaluate import evaluate
    from omnifield.apps.recon.run import Run
    from omnifield.backend import build_on, resolve_device
    from omnifield.cli import main
    from omnifield.data.blender import load_blender

    argv = ["train", str(data), "--method", "hashgrid", "--out", str(out), "--minutes", str(minutes),
            "--steps", str(10**7), "--no-eval", "--device", device]
    t0 = time.perf_counter()
    code = main(argv)
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"hash-grid NeRF training failed with exit code {code}")
    with build_on(resolve_device(device)):
        run, _, _ = Run.open(out)
    run.to(resolve_device(device))
    metrics = evaluate(run, load_blender(data, "test"), out / "renders" / "test", limit=eval_views)
    return {"method": "hash-grid NeRF", "psnr": metrics["psnr"], "ssim": metrics["ssim"], "n_gaussians": None,
            "size_mb": (out / "checkpoint.safetensors").stat().st_size / 1e6,
            "train_seconds": wall, "render_fps": 1.0 / metrics["seconds_per_frame"]}


def nerf_view0(out: Path) -> np.ndarray | None:
    pngs = sorted((out / "renders" / "test").glob("*.png"))
    pngs = [p for p in pngs if not p.stem.endswith("_depth")]
    if not pngs:
        return None
    both = iio.imread(pngs[0])[..., :3]
    return both[:, : both.shape[1] // 2]


def _first_render(run: Path) -> np.ndarray | None:
    path = run / "renders" / "test" / "000.png"
    return iio.imread(path)[..., :3] if path.is_file() else None


def _forward_backward_seconds(fn, tensors: list[torch.Tensor], rest: tuple, repeats: int) -> tuple[float, float]:
    """Best forward and forward+backward seconds of ``fn(*tensors, *rest)`` (gradients to ``tensors``),
    after one untimed call (which loads a native kernel)."""
    fn(*tensors, *rest)
    fwd, both = [], []
    for _ in range(repeats):
        leaves = [t.clone().requires_grad_() for t in tensors]
        t0 = time.perf_counter()
        outputs = fn(*leaves, *rest)
        t1 = time.perf_counter()
        sum(o.sum() for o in outputs if o.is_floating_point()).backward()
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        both.append(t2 - t0)
    return min(fwd), min(both)


def raster_rows(n: int, repeats: int) -> list[dict]:
    """200x200 frame of ``n`` random screen-space Gaussians: native vs torch twin, forward and forward+backward."""
    g = torch.Generator().manual_seed(0)
    size = 200
    means2d = torch.rand(n, 2, generator=g) * size
    s = torch.rand(n, generator=g) * 2.0 + 0.5
    conics = torch.stack([1 / s**2, torch.zeros(n), 1 / s**2], -1)
    colors, opac, depths = torch.rand(n, 3, generator=g), torch.rand(n, generator=g) * 0.8, torch.rand(n, generator=g)
    radii = torch.ceil(3 * s).int()
    rest = (depths, radii, size, size, 16, torch.ones(3))
    rows = []
    for name, fn in (("native kernel", rasterize_to_pixels), ("torch twin (baseline)", _rasterize_to_pixels)):
        fwd, both = _forward_backward_seconds(fn, [means2d, conics, colors, opac], rest, repeats)
        rows.append({"method": f"rasterize {n // 1000}k Gaussians 200x200: {name}",
                     "forward_s": fwd, "forward_backward_s": both})
    return rows


def projection_rows(n: int, repeats: int) -> list[dict]:
    """EWA projection of ``n`` random Gaussians (scales, quaternions) into a 200x200 camera: native vs twin."""
    g = torch.Generator().manual_seed(1)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 2.0
    scales = torch.exp(torch.rand(n, 3, generator=g) * 3.0 - 6.0)
    quats = torch.randn(n, 4, generator=g)
    viewmat = torch.eye(4)
    viewmat[2, 3] = 4.0
    K = torch.tensor([[280.0, 0.0, 100.0], [0.0, 280.0, 100.0], [0.0, 0.0, 1.0]])

    def twin(m, s, q, *rest):
        return project_gaussians(m, build_covariances(s, q), *rest)

    rows = []
    for name, fn in (("native kernel", project_splats), ("torch twin (baseline)", twin)):
        fwd, both = _forward_backward_seconds(fn, [means, scales, quats], (viewmat, K, 200, 200), repeats)
        rows.append({"method": f"project {n // 1000}k Gaussians: {name}", "forward_s": fwd, "forward_backward_s": both})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/lego_200", help="Blender-format scene")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per method")
    parser.add_argument("--quick", action="store_true", help="<= 2 minutes: 0.25-minute budgets, 20k-Gaussian raster rows")
    parser.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads (<= 2 on the shared machine)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto for the training runs (raster rows: CPU)")
    parser.add_argument("--work", help="folder for the runs (default: a temporary folder)")
    parser.add_argument("--picture", default="docs/images/splat_lego.png", help="side-by-side picture of test view 0")
    parser.add_argument("--out", help="write the table as a JSON list of rows")
    parser.add_argument("--eval-views", type=int, default=13, help="test views evaluated (the first N; 13 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="nerf,3dgs,compact", help="which training rows to run")
    parser.add_argument("--reuse", help="JSON of an earlier --out: rows of the methods not run come from it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    minutes = 0.25 if args.quick else args.minutes
    data = Path(args.data)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="splat_lego_"))
    n_init = 5000 if args.quick else 20000
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - {"nerf", "3dgs", "compact"}
    if unknown:
        parser.error(f"--methods: unknown {sorted(unknown)} (choose from nerf, 3dgs, compact)")
    previous = {r["method"]: r for r in json.loads(Path(args.reuse).read_text())} if args.reuse else {}
    rows, pictures = [], {}
    nerf_out = work / "nerf"
    eval_views = 2 if args.quick else args.eval_views
    common = {"eval_views": eval_views, "n_init": n_init, "refine_start": 100 if args.quick else 300,
              "max_gaussians": 60000}
    for key, label in (("nerf", "hash-grid NeRF"), ("3dgs", "3DGS"), ("compact", "Compact-3DGS")):
        if key not in methods:
            if label not in previous:
                parser.error(f"--methods leaves out {key} but --reuse has no {label!r} row")
            rows.append({**previous[label], "reused": True})
        elif key == "nerf":
            rows.append(run_nerf(data, nerf_out, minutes, eval_views, args.device))
        else:
            out = work / label
            m = train_splat(data, out, *splat_configs(minutes, key == "compact", args.seed, common), device=args.device)
            rows.append({"method": label, "psnr": m["psnr"], "ssim": m["ssim"], "n_gaussians": m["n_gaussians"],
                         "size_mb": m["size_mb"], "train_seconds": m["train_seconds"],
                         "render_fps": m["render_fps"], "steps": m["steps"]})
        pictures[label] = nerf_view0(nerf_out) if key == "nerf" else _first_render(work / label)
        _save(rows, args.out)
    n_kernel, repeats = (20000, 1) if args.quick else (100000, 3)
    rows += raster_rows(n_kernel, repeats) + projection_rows(n_kernel, repeats)
    vanilla, compact_row = rows[1], rows[2]
    rows.append({"method": "Compact vs 3DGS", "size_ratio": vanilla["size_mb"] / compact_row["size_mb"],
                 "psnr_loss_db": vanilla["psnr"] - compact_row["psnr"]})
    _picture(data, pictures, Path(args.picture))
    _print_table(rows)
    _save(rows, args.out)


def _save(rows: list[dict], path: str | None) -> None:
    """Write the rows so far (each finished run is kept even if a later one fails)."""
    if path:
        Path(path).write_text(json.dumps(rows, indent=2))


def _picture(data: Path, pictures: dict, path: Path) -> None:
    from omnifield.data.blender import load_blender
    from omnifield.data.images import composite_on, to_uint8

    gt = to_uint8(composite_on(load_blender(data, "test").images[0], torch.ones(3)))
    panels = [gt] + [p for p in pictures.values() if p is not None]
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.concatenate(panels, axis=1))
    print(f"picture ({' | '.join(['GT'] + [k for k, v in pictures.items() if v is not None])}): {path}")


def _print_table(rows: list[dict]) -> None:
    keys = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    fmt = lambda v: "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    widths = {k: max(len(k), *(len(fmt(r.get(k))) for r in rows)) for k in keys}
    print(" | ".join(k.ljust(widths[k]) for k in keys))
    print("-|-".join("-" * widths[k] for k in keys))
    for row in rows:
        print(" | ".join(fmt(row.get(k)).ljust(widths[k]) for k in keys))


if __name__ == "__main__":
    main()
