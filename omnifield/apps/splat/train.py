"""Training Gaussians from posed images (``omnifield train DATA --method splat``).

Data come from :func:`~omnifield.data.scene.load_scene` (any capture format, ``--downscale``): training
on the ``train`` split, evaluation on ``test`` (Blender's split files, else every 8th image by name).
Images with alpha are trained and scored on white (the NeRF-synthetic protocol). Real captures have no
alpha, so nothing says what lies behind the Gaussians: each step composites the render over a random
colour, which only matches the photo where the Gaussians cover it (opacity 1), and evaluation renders
on black. ``--init auto`` starts from the capture's sparse points, else from points along random
training rays between the per-view depth bounds (LLFF), else from random points in ``--aabb``.

Per step: one random training view is rendered, loss ``0.8 L1 + 0.2 (1 - SSIM)`` (+ the mask loss
for Compact-3DGS, + S3IM over 4096 random pixels with ``--loss.s3im-weight``), Adam with 3DGS/gsplat
learning rates (means: ``1.6e-4 * scene_scale`` decayed 100x), then adaptive density control
(:mod:`.density_control`). The SH degree rises by one every ``--sh-interval`` steps. With
``--minutes`` the run is driven by time: densification stops at ``--densify-until`` of the budget and
RVQ (Compact-3DGS) starts at ``--rvq-from``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnifield.apps.splat.compact import CompactConfig, CompactGaussianScene
from omnifield.apps.splat.compress import save_compressed
from omnifield.apps.splat.density_control import DensityControl, DensityControlConfig
from omnifield.apps.splat.init import points_from_density, points_from_views, random_points
from omnifield.apps.splat.run import save_splat_run
from omnifield.backend import missing_cuda_library_note, resolve_device
from omnifield.data.blender import PosedImages
from omnifield.data.images import composite_on, to_uint8
from omnifield.data.scene import Scene, load_scene
from omnifield.errors import OmnifieldError
from omnifield.fields.gaussians import GaussianScene
from omnifield.io.atomic import atomic_path, write_text_atomic
from omnifield.io.points import read_point_cloud
from omnifield.io.splat_ply import save_splat_ply
from omnifield.losses.photometric import photometric_loss, s3im_on_pixels
from omnifield.metrics import psnr, ssim
from omnifield.renderers.splat import SplatRenderer

LEARNING_RATES = {"means": 1.6e-4, "log_scales": 5e-3, "quats": 1e-3, "opacity_logits": 5e-2,
                  "sh_dc": 2.5e-3, "sh_rest": 2.5e-3 / 20, "mask_logits": 1e-2}
FIELD_LR = 1e-2  # hash grid and colour MLP of Compact-3DGS (the paper's code)
# x0.33 at these fractions of the run. The paper's code: one step at 25k of 30k steps for synthetic objects,
# three (5k, 15k, 25k) for real scenes; the second set stalls the colour field in a short run.
FIELD_LR_DECAY_AT = (5 / 6,)
FIELD_LR_WARMUP_STEPS = 100  # linear ramp from 1% (the paper's code)


def color_field_lr_factor(step: int, progress: float, decay_at: tuple[float, ...] = FIELD_LR_DECAY_AT) -> float:
    """Multiplier of the colour field's learning rate at ``step`` (from 1) and ``progress`` (fraction of
    the run, by steps or time): a linear warm-up from 0.01 over the first 100 steps, then x0.33 at each
    fraction in ``decay_at`` that the run has passed."""
    warmup = min(1.0, 0.01 + 0.99 * step / FIELD_LR_WARMUP_STEPS)
    return warmup * 0.33 ** sum(progress >= fraction for fraction in decay_at)


def add_splat_arguments(parser: argparse.ArgumentParser) -> None:
    """Splat-specific options of ``omnifield train`` (``--steps``, ``--minutes``, ``--seed`` are shared)."""
    g = parser.add_argument_group("Gaussian splatting (--method splat)")
    g.add_argument("--init", choices=["auto", "scene", "views", "random", "points", "nerf"], default="auto",
                   help="initial Gaussians: the capture's sparse points (scene), points on training rays within "
                        "the per-view depth bounds (views), random points in --aabb, --init-points FILE or "
                        "--init-nerf's density; auto (default) = scene, else views, else random")
    g.add_argument("--init-points", metavar="FILE", help="point cloud (.ply or COLMAP points3D.txt) for --init points")
    g.add_argument("--init-nerf", metavar="RUN", help="trained radiance-field run folder for --init nerf")
    g.add_argument("--n-init", type=int, default=20000, help="number of initial Gaussians (random / views / nerf)")
    g.add_argument("--aabb", type=float, nargs=6, default=[-1.5, -1.5, -1.5, 1.5, 1.5, 1.5],
                   metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"), help="scene box (random init, colour grid)")
    g.add_argument("--sh-degree", type=int, default=3, choices=[0, 1, 2, 3], help="maximum SH degree")
    g.add_argument("--sh-interval", type=int, default=1000, help="raise the active SH degree every N steps")
    g.add_argument("--max-gaussians", type=int, default=200000, help="cap on the number of Gaussians (0 = none)")
    g.add_argument("--densify-until", type=float, default=0.5, help="fraction of the run with density control")
    g.add_argument("--refine-every", type=int, default=100, help="density control period in steps")
    g.add_argument("--reset-every", type=int, default=3000, help="opacity reset period in steps")
    g.add_argument("--refine-start", type=int, default=500, help="first step of density control")
    g.add_argument("--eval-views", type=int, default=0, help="evaluate on the first N test views (0 = all)")
    g.add_argument("--compact", action="store_true", help="Compact-3DGS: masks, hash-grid colour, RVQ, compressed file")
    g.add_argument("--rvq-from", type=float, default=29 / 30,
                   help="fraction of the run after which RVQ is on (--compact; paper: the last 1k of 30k steps)")
    g.add_argument("--mask-lambda", type=float, default=CompactConfig.mask_lambda,
                   help="weight of the volume-mask loss (--compact; paper: 4e-3 synthetic objects, 5e-4 real scenes)")
    g.add_argument("--mask-lr", type=float, default=LEARNING_RATES["mask_logits"],
                   help="Adam learning rate of the mask logits (--compact; paper: 1e-3 synthetic, 1e-2 real scenes)")
    g.add_argument("--color-lr", type=float, default=FIELD_LR,
                   help="initial Adam learning rate of the colour hash grid and MLP, warmed up over 100 steps, then "
                        "x0.33 at each --color-lr-decay-at (--compact; paper: 1e-2 real scenes, 1e-3 synthetic "
                        "objects in 30k steps)")
    g.add_argument("--color-lr-decay-at", type=float, nargs="*", default=list(FIELD_LR_DECAY_AT), metavar="FRACTION",
                   help="fractions of the run where the colour field's learning rate drops x0.33 (--compact; "
                        "paper: 5/6 for synthetic objects, 1/6 1/2 5/6 for real scenes)")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    keys = ["init", "init_points", "init_nerf", "n_init", "aabb", "sh_degree", "sh_interval", "max_gaussians",
            "densify_until", "refine_every", "reset_every", "refine_start", "compact", "rvq_from", "mask_lambda",
            "mask_lr", "color_lr", "color_lr_decay_at", "eval_views"]
    defaults = argparse.ArgumentParser()
    add_splat_arguments(defaults)
    base = vars(defaults.parse_args([]))
    opts = {k: getattr(args, k, base[k]) for k in keys}
    opts["downscale"] = getattr(args, "downscale", 1)  # load_scene checks it
    opts.update(steps=int(getattr(args, "steps", 30000) or 0), minutes=float(getattr(args, "minutes", 0.0) or 0.0),
                seed=int(getattr(args, "seed", 0)), s3im_weight=float(getattr(args, "s3im_weight", 0.0) or 0.0))
    if opts["steps"] <= 0 and opts["minutes"] <= 0:
        raise OmnifieldError("--steps or --minutes must be positive")
    fractions = [opts["densify_until"], opts["rvq_from"], *opts["color_lr_decay_at"]]
    if not all(0.0 <= f <= 1.0 for f in fractions):  # also catches NaN
        raise OmnifieldError("--densify-until, --rvq-from and --color-lr-decay-at must be fractions in [0, 1]")
    if opts["mask_lambda"] < 0:
        raise OmnifieldError("--mask-lambda must be >= 0")
    if not (opts["mask_lr"] > 0 and opts["color_lr"] > 0):  # also catches NaN
        raise OmnifieldError("--mask-lr and --color-lr must be > 0")
    if opts["n_init"] < 1:
        raise OmnifieldError("--n-init must be >= 1")
    if opts["s3im_weight"] < 0:
        raise OmnifieldError("--loss.s3im-weight must be >= 0")
    return opts


def scene_scale_of(cameras) -> float:
    """gsplat's scene scale: 1.1 x the largest distance of a camera centre from their mean."""
    centres = cameras.c2w[:, :3, 3]
    return 1.1 * float((centres - centres.mean(0)).norm(dim=-1).max())


def resolve_init(init: str, data: Scene) -> str:
    """``--init auto`` -> ``scene`` when the capture has sparse points, ``views`` when it has depth bounds,
    else ``random``; other choices are checked against what the capture offers."""
    if init == "auto":
        return "scene" if data.points is not None else "views" if data.near_far is not None else "random"
    if init == "scene" and data.points is None:
        raise OmnifieldError("--init scene: this capture has no sparse points (COLMAP points3D or ply_file_path)")
    if init == "views" and data.near_far is None:
        raise OmnifieldError("--init views: this capture has no per-view depth bounds")
    return init


def initial_scene(opts: dict[str, Any], generator: torch.Generator, data: Scene) -> GaussianScene:
    """The starting Gaussians chosen by ``opts["init"]`` (resolved by :func:`resolve_init`) for ``data``."""
    aabb = torch.tensor(opts["aabb"], dtype=torch.float32)
    if opts["init"] == "scene":
        pts, colors = data.points.xyz, data.points.rgb
    elif opts["init"] == "views":
        pts, colors = points_from_views(data.images, data.cameras, data.near_far, opts["n_init"], generator)
    elif opts["init"] == "points":
        if not opts["init_points"]:
            raise OmnifieldError("--init points needs --init-points FILE")
        pts, colors = read_point_cloud(opts["init_points"])
    elif opts["init"] == "nerf":
        if not opts["init_nerf"]:
            raise OmnifieldError("--init nerf needs --init-nerf RUN_FOLDER")
        from omnifield.apps.recon.run import Run

        run, tensors, _ = Run.open(opts["init_nerf"])
        from omnifield.io.checkpoint import load_module_state

        load_module_state("field", run.field, tensors, str(opts["init_nerf"]))
        pts, colors = points_from_density(run.field.eval(), opts["n_init"], generator)
    else:
        pts, colors = random_points(opts["n_init"], aabb, generator)
    return GaussianScene.from_points(pts, colors, sh_degree=opts["sh_degree"])


def make_optimizer(scene: GaussianScene, scene_scale: float, mask_lr: float = LEARNING_RATES["mask_logits"],
                   color_lr: float = FIELD_LR) -> torch.optim.Adam:
    """Adam with one group per per-Gaussian parameter (named), plus the colour field for Compact-3DGS
    (with Instant-NGP's beta2 = 0.99: rows of the hash table that few Gaussians touch adapt faster)."""
    rates = {**LEARNING_RATES, "mask_logits": mask_lr}
    groups = []
    for name in scene.gaussian_parameter_names():
        lr = rates[name] * (scene_scale if name == "means" else 1.0)
        groups.append({"params": [getattr(scene, name)], "lr": lr, "name": name, "base_lr": lr})
    if isinstance(scene, CompactGaussianScene):
        field_params = list(scene.color_grid.parameters()) + list(scene.color_mlp.parameters())
        groups.append({"params": field_params, "lr": color_lr, "name": "color_field", "base_lr": color_lr,
                       "betas": (0.9, 0.99)})  # Instant-NGP's Adam for hash grids, as in apps/fit
    return torch.optim.Adam(groups, eps=1e-15)


def train_splat(data_dir: Path, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train on the ``train`` split of ``data_dir`` (any capture format, at ``args.downscale``), write the run to
    ``out_dir``; returns the metrics on the ``test`` split.

    ``args.device`` (``auto``/``cpu``/``cuda``/``cuda:N``) picks where the Gaussians live; on CUDA the
    renderer uses gsplat when it is installed, else the same torch rasterizer as on the CPU.
    """
    opts = _options(args)
    device = resolve_device(getattr(args, "device", "auto"))
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    torch.manual_seed(opts["seed"])
    generator = torch.Generator().manual_seed(opts["seed"])
    train = load_scene(data_dir, "train", opts["downscale"])
    opts["init"] = resolve_init(opts["init"], train)
    random_background = train.images.shape[-1] != 4
    background = torch.zeros(3) if random_background else torch.ones(3)
    images = composite_on(train.images, background).to(device)
    cameras = train.cameras.to(device)
    scale = scene_scale_of(train.cameras)
    scene = initial_scene(opts, generator, train)
    if opts["compact"]:
        scene = CompactGaussianScene.from_scene(scene, torch.tensor(opts["aabb"]),
                                                CompactConfig(mask_lambda=opts["mask_lambda"]))
    scene = scene.to(device)
    optimizer = make_optimizer(scene, scale, opts["mask_lr"], opts["color_lr"])
    control_cfg = DensityControlConfig(refine_start_iter=opts["refine_start"], refine_every=opts["refine_every"],
                                       reset_every=opts["reset_every"], max_gaussians=opts["max_gaussians"])
    control = DensityControl(control_cfg, scale)
    renderer = SplatRenderer(background=tuple(background.tolist()))
    on_device = f", on {device}" if device.type != "cpu" else ""
    print(f"training splat{' (compact)' if opts['compact'] else ''} from {len(scene)} Gaussians "
          f"({opts['init']} init, scene scale {scale:.3g}) on {data_dir} ({len(images)} views, "
          f"{cameras.width}x{cameras.height}{on_device}, "
          f"{'random' if random_background else 'white'} background) -> {out_dir}")
    steps, budget = opts["steps"], opts["minutes"] * 60.0
    log: list[dict[str, Any]] = []
    note = missing_cuda_library_note(device, "gsplat", "rasterization")
    if note:
        print(note)
    order = torch.randperm(len(images), generator=generator)
    decay_at = tuple(opts["color_lr_decay_at"])
    start, step = time.perf_counter(), 0
    while True:
        elapsed = time.perf_counter() - start
        progress = max(step / steps if steps > 0 else 0.0, elapsed / budget if budget > 0 else 0.0)
        if progress >= 1.0:
            break
        if progress >= opts["densify_until"] and control.cfg.refine_stop_iter > step:
            control.cfg.refine_stop_iter = step
        if isinstance(scene, CompactGaussianScene) and not scene.use_rvq and progress >= opts["rvq_from"]:
            scene.enable_rvq()
        step += 1
        scene.set_sh_degree_for_step(step, opts["sh_interval"])
        view = int(order[step % len(order)])
        out = renderer.render_camera(scene, cameras, view)
        if random_background:  # rendered on black: add a random colour where the Gaussians leave light through
            bg = torch.rand(3, generator=generator).to(device)
            out["rgb"] = out["rgb"] + (1.0 - out["alpha"][..., None]) * bg
        loss = photometric_loss(out["rgb"], images[view])
        if opts["s3im_weight"] > 0:
            loss = loss + opts["s3im_weight"] * s3im_on_pixels(out["rgb"], images[view], generator)
        if isinstance(scene, CompactGaussianScene):
            loss = loss + scene.mask_loss()
        loss.backward()
        report = control.step_post_backward(
            scene, optimizer, {**out, "width": cameras.width, "height": cameras.height}, step)
        for group in optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = group["base_lr"] * 0.01**progress
            elif group["name"] == "color_field":
                group["lr"] = group["base_lr"] * color_field_lr_factor(step, progress, decay_at)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step == 1:  # the first step compiles native kernels: it does not count against the time budget
            start = time.perf_counter()
        if step % 100 == 0 or report.get("split") or report.get("duplicated"):
            entry = {"step": step, "seconds": round(time.perf_counter() - start, 2), "loss": float(loss.detach()),
                     "n_gaussians": len(scene), **report}
            log.append(entry)
            if step % 500 == 0:
                print(json.dumps(entry))
    train_seconds = time.perf_counter() - start
    scene.eval()
    config = {"method": "splat", "data": str(data_dir), "options": opts, "train_views": train.names}
    save_splat_run(out_dir, scene, step, config)
    files = {"ply": out_dir / "scene.ply"}
    save_splat_ply(scene.to_plain_scene() if isinstance(scene, CompactGaussianScene) else scene, files["ply"])
    metrics: dict[str, Any] = {"method": "splat-compact" if opts["compact"] else "splat", "steps": step,
                               "train_seconds": round(train_seconds, 1), "n_gaussians": len(scene),
                               "ply_mb": files["ply"].stat().st_size / 1e6}
    if isinstance(scene, CompactGaussianScene):
        metrics["n_gaussians"] = int((~scene.prune_mask()).sum())
        metrics["compressed_mb"] = save_compressed(scene, out_dir / "scene.ofz") / 1e6
    metrics["size_mb"] = metrics.get("compressed_mb", metrics["ply_mb"])
    with atomic_path(out_dir / "log.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(e) + "\n" for e in log))
    if not getattr(args, "no_eval", False):
        test = load_scene(data_dir, "test", opts["downscale"])
        metrics.update(evaluate_splat(scene, test, renderer, out_dir / "renders" / "test", opts["eval_views"]))
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    print(json.dumps(metrics))
    return metrics


@torch.no_grad()
def evaluate_splat(scene: GaussianScene, data: PosedImages, renderer: SplatRenderer,
                   render_dir: Path | None = None, limit: int = 0) -> dict[str, Any]:
    """Test-split PSNR / SSIM (images with alpha composited on the renderer's background) and render speed
    (frames/s) over the first ``limit`` views (0 = all)."""
    import imageio.v3 as iio

    background = torch.tensor(renderer.background)
    targets = composite_on(data.images[: limit or None], background)
    psnrs, ssims, seconds = [], [], 0.0
    on_cuda = scene.means.is_cuda
    for i in range(len(targets)):
        t0 = time.perf_counter()
        rgb = renderer.render_camera(scene, data.cameras, i)["rgb"].clamp(0, 1)
        if on_cuda:
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        rgb = rgb.cpu()
        psnrs.append(psnr(rgb, targets[i]))
        ssims.append(float(ssim(rgb, targets[i])))
        if render_dir is not None:
            render_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(render_dir / f"{i:03d}.png") as tmp:
                iio.imwrite(tmp, to_uint8(rgb), extension=".png")
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "n_views": len(targets),
            "render_fps": len(targets) / max(seconds, 1e-9)}
