"""Field backends side by side: image fitting (PSNR), SDF fitting (Chamfer / normal consistency / IoU)
and NeRF on lego (test PSNR), at an equal parameter budget and at an equal time budget.

Rows: ``equal-params`` (every backend sized to the same parameter count, same number of steps),
``equal-time`` (the same configs, each given the same wall-clock seconds) and ``cam-pair`` (the
positional-encoding MLP with and without CAM at the same base width, the paper's comparison).
``act_MB`` is the memory autograd keeps for one training batch (saved tensors), ``param_MB`` the weights.

    python benchmarks/backends.py --quick --out backends.json          # <= a few minutes on an idle machine
    python benchmarks/backends.py --data data/lego_200 --out full.json   # larger sizes, the NeRF column too
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from omnifield.apps.fit.image import FitImageConfig, fit_image, load_image  # noqa: E402
from omnifield.apps.fit.presets import BACKENDS, count_parameters, field_for_budget  # noqa: E402
from omnifield.apps.fit.sdf import FitSDFConfig, extract_mesh, fit_sdf, load_mesh, mesh_metrics  # noqa: E402
from omnifield.config import replace_config  # noqa: E402
from omnifield.engine import LoopConfig  # noqa: E402
from omnifield.fields.cam import CAMConfig  # noqa: E402

NERF_BACKENDS = ("hashgrid", "hashgrid_cam", "mlp", "mlp_cam", "triplane", "neurbf")


def saved_tensor_megabytes(loss_fn) -> float:
    """Megabytes of tensors autograd saves for backward while computing ``loss_fn()``."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn()
    return total / 2**20


def param_megabytes(module) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 2**20


def with_cam(cfg, coord_dims: int):
    """The same field config with its MLP decoder wrapped by CAM."""
    return replace_config(cfg, decoder=CAMConfig(base=cfg.decoder, coord_dims=coord_dims, resolution=32 if coord_dims == 2 else 16))


def image_rows(args) -> list[dict]:
    image = load_image(args.image, args.image_size)
    uv = torch.rand(4096, 2)
    rows = []
    crops = {"ground truth": image}

    def run(setting, backend, cfg, steps, seconds):
        result = fit_image(image, cfg, FitImageConfig(loop=LoopConfig(steps=steps, minutes=seconds / 60), batch_pixels=args.batch))
        field = result["field"]
        act = saved_tensor_megabytes(lambda: field(uv).square().mean())
        rows.append({"task": "image", "setting": setting, "backend": backend, "params": count_parameters(field),
                     "steps": result["steps"], "seconds": round(result["seconds"], 1), "psnr": round(result["psnr"], 2),
                     "param_MB": round(param_megabytes(field), 2), "act_MB_4k": round(act, 1)})
        print(rows[-1], flush=True)
        if setting == "equal-params":
            crops[f"{backend} {result['psnr']:.1f} dB"] = result["prediction"]

    for backend in args.backends if "equal-params" in args.settings else ():
        run("equal-params", backend, field_for_budget("image", backend, args.image_params), args.steps, 0.0)
    for backend in args.backends if "equal-time" in args.settings else ():
        run("equal-time", backend, field_for_budget("image", backend, args.image_params), 10**9, args.seconds)
    if "cam-pair" in args.settings:
        base = field_for_budget("image", "mlp", args.image_params)
        run("cam-pair", "mlp", base, args.steps, 0.0)
        run("cam-pair", "mlp+cam", with_cam(base, 2), args.steps, 0.0)
    if args.figure and len(crops) > 1:
        save_crops(crops, Path(args.figure))
    return rows


def save_crops(images: dict, path: Path) -> None:
    """One labelled crop (the central half of the image) per backend, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from omnifield.io.atomic import atomic_path

    fig, axes = plt.subplots(1, len(images), figsize=(2.2 * len(images), 2.6))
    for ax, (label, img) in zip(axes, images.items()):
        h, w = img.shape[:2]
        ax.imshow(img[h // 4: 3 * h // 4, w // 4: 3 * w // 4].clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    print(f"wrote {path}", flush=True)


def sdf_rows(args) -> list[dict]:
    mesh = load_mesh(args.mesh)
    pts = torch.rand(4096, 3) * 0.2 - 0.1
    rows = []

    def run(setting, backend, cfg, steps, seconds):
        fit_cfg = FitSDFConfig(loop=LoopConfig(steps=steps, minutes=seconds / 60), n_samples=args.sdf_samples, batch_points=args.batch,
                               mesh_resolution=args.mesh_resolution)
        result = fit_sdf(mesh, cfg, fit_cfg)
        field = result["field"]
        try:
            scores = mesh_metrics(extract_mesh(field, args.mesh_resolution), mesh, n_points=30000)
        except Exception as exc:  # noqa: BLE001 - a field without a surface scores as failed
            scores = {"chamfer": math.nan, "chamfer_rel": math.nan, "normal_consistency": math.nan, "iou": 0.0}
            print(f"{backend}: {exc}", flush=True)
        act = saved_tensor_megabytes(lambda: field.sdf_and_gradient(pts)[1].square().mean())
        rows.append({"task": "sdf", "setting": setting, "backend": backend, "params": count_parameters(field),
                     "steps": result["steps"], "seconds": round(result["seconds"], 1),
                     "chamfer_rel_pct": round(100 * scores["chamfer_rel"], 3),
                     "normal_consistency": round(scores["normal_consistency"], 3), "iou": round(scores["iou"], 3),
                     "param_MB": round(param_megabytes(field), 2), "act_MB_4k": round(act, 1)})
        print(rows[-1], flush=True)

    for backend in args.backends if "equal-params" in args.settings else ():
        run("equal-params", backend, field_for_budget("sdf", backend, args.sdf_params), args.sdf_steps, 0.0)
    for backend in args.backends if "equal-time" in args.settings else ():
        run("equal-time", backend, field_for_budget("sdf", backend, args.sdf_params), 10**9, args.seconds)
    return rows


def nerf_rows(args) -> list[dict]:
    from omnifield.apps.recon.config import TrainConfig
    from omnifield.apps.recon.evaluate import evaluate
    from omnifield.apps.recon.run import Run
    from omnifield.apps.recon.trainer import Trainer
    from omnifield.data.blender import load_blender
    from omnifield.fields import field_config
    from omnifield.fields.hashgrid import HashGridConfig
    from omnifield.fields.neurbf import NeuRBFConfig
    from omnifield.fields.triplane import TriPlaneConfig
    from omnifield.renderers.volume import VolumeRendererConfig

    train = load_blender(args.data, "train", args.nerf_downscale)
    test = load_blender(args.data, "test", args.nerf_downscale)
    rows = []
    for backend in args.nerf_backends:
        cfg = field_config(backend)
        if isinstance(cfg.encoding, HashGridConfig):  # CPU-sized presets, same for the CAM variant
            cfg = replace_config(cfg, encoding=replace_config(cfg.encoding, log2_hashmap_size=16, max_resolution=512))
        elif isinstance(cfg.encoding, TriPlaneConfig):
            cfg = replace_config(cfg, encoding=replace_config(cfg.encoding, resolutions=(32, 64, 128), n_features=16))
        elif isinstance(cfg.encoding, NeuRBFConfig):
            cfg = replace_config(cfg, encoding=replace_config(cfg.encoding, n_bases=2048))
        torch.manual_seed(0)
        train_cfg = TrainConfig(steps=args.nerf_steps, minutes=args.nerf_minutes, batch_rays=1024, target_samples=1 << 14,
                                checkpoint_every_s=1e9)
        run = Run.create(Path(args.work) / backend, backend, cfg, VolumeRendererConfig(), train_cfg, str(args.data),
                         args.nerf_downscale)
        trainer = Trainer(run, train, progress=False)
        trainer.fit()
        metrics = evaluate(run, test, limit=args.nerf_views, progress=False)
        rows.append({"task": "nerf", "setting": "same-steps" if args.nerf_minutes == 0 else "equal-time",
                     "backend": backend, "params": count_parameters(run.field), "steps": trainer.step,
                     "seconds": round(trainer.elapsed, 1), "psnr": round(metrics["psnr"], 2),
                     "param_MB": round(param_megabytes(run.field), 2)})
        print(rows[-1], flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, image and SDF only")
    p.add_argument("--data", default=None, help="Blender scene for the NeRF column (e.g. data/lego_200)")
    p.add_argument("--image", default=str(REPO / "data" / "astronaut" / "astronaut.png"))
    p.add_argument("--mesh", default=str(REPO / "data" / "bunny" / "bunny.obj"))
    p.add_argument("--tasks", default="image,sdf,nerf")
    p.add_argument("--backends", default=",".join(BACKENDS), help="image/SDF backends to run")
    p.add_argument("--nerf-backends", default=",".join(NERF_BACKENDS))
    p.add_argument("--settings", default="equal-params,equal-time,cam-pair")
    p.add_argument("--steps", dest="steps_override", type=int, default=0, help="override the image/SDF/NeRF step counts")
    p.add_argument("--out", default=None, help="write the rows as a JSON list")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/omnifield_backends_bench")
    p.add_argument("--nerf-minutes", type=float, default=0.0,
                   help="give every NeRF backend this wall-clock budget instead of the same step count")
    p.add_argument("--figure", default=None, help="write image crops of every backend (equal parameters) to this PNG")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    q = args.quick
    args.backends = args.backends.split(",")
    args.settings = set(args.settings.split(","))
    # the full image keeps astronaut's 512^2 pixels, 4x more than the parameters (a compression regime)
    args.image_size, args.image_params = (64, 20_000) if q else (512, 60_000)
    args.steps, args.seconds, args.batch = (150, 8.0, 2048) if q else (500, 30.0, 4096)
    args.sdf_params, args.sdf_steps, args.sdf_samples = (40_000, 80, 20_000) if q else (100_000, 300, 60_000)
    args.mesh_resolution = 48 if q else 96
    args.nerf_backends, args.nerf_downscale, args.nerf_views = args.nerf_backends.split(","), 4, 4
    args.nerf_steps = 50 if q else 300
    if args.nerf_minutes > 0:  # equal time instead of the same number of steps
        args.nerf_steps = 10**9
    if args.steps_override:
        args.steps = args.sdf_steps = args.nerf_steps = args.steps_override
    tasks = set(args.tasks.split(","))
    rows: list[dict] = []
    t0 = time.perf_counter()
    if "image" in tasks:
        rows += image_rows(args)
    if "sdf" in tasks:
        rows += sdf_rows(args)
    if "nerf" in tasks and args.data:
        rows += nerf_rows(args)
    print_table(rows)
    print(f"total {time.perf_counter() - t0:.0f} s on {args.threads} threads")
    if args.out:
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=2))
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
