"""``omnifield eval | render`` and the radiance-field half of ``omnifield train``: reconstruction from posed images."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import fields
from pathlib import Path
from typing import Callable, ContextManager

import torch

from omnifield import distributed
from omnifield.apps.recon.config import TrainConfig
from omnifield.apps.recon.coverage import Coverage
from omnifield.apps.recon.evaluate import WHITE, evaluate, render_orbit
from omnifield.apps.recon.open_run import SplatRun, open_run
from omnifield.apps.recon.run import DEPTH_WEIGHT_PHOTOS, DISTORTION_WEIGHT_PHOTOS, Run
from omnifield.apps.recon.trainer import Trainer
from omnifield.backend import build_on, missing_cuda_library_note, resolve_device
from omnifield.cli_options import add_log_argument, refuse_changed_settings
from omnifield.config import replace_config
from omnifield.config_overrides import apply_section_overrides
from omnifield.data.scene import load_scene
from omnifield.data.sparse_depth import SparseDepth, training_depths
from omnifield.engine import Engine
from omnifield.errors import OmnifieldError
from omnifield.fields.footprint import check_field_fits
from omnifield.fields.registry import field_config, field_names
from omnifield.io.atomic import write_text_atomic
from omnifield.renderers.space import SCENE_TYPES, SPACE_OF_SCENE, choose_space, detect_scene_type, nearest_depth
from omnifield.renderers.volume import SAMPLERS, VolumeRendererConfig, sampler_settings, sampling_summary
from omnifield.resources import require_memory

DEVICE_HELP = "auto (a GPU when present, else the CPU), cpu, cuda or cuda:N (default auto)"
SPLIT_HELP = ("split {what} (default: test); 'train' uses the refined training poses and each view's appearance "
              "code, other splits their given poses and the mean code")
MAX_ORBIT_FRAMES = 7200  # five minutes at 24 frames/s
CHUNK_HELP = "rays rendered at once: bounds rendering memory, which grows linearly with it (default 8192)"

Watch = Callable[[Run, Engine], ContextManager]  # something to run beside training, e.g. the live viewer


def scene_space(data, requested: str = "auto") -> tuple[str, dict]:
    """The scene type of the training data (``requested`` unless ``"auto"``) and the renderer/field
    settings of its space (:func:`omnifield.renderers.space.choose_space`)."""
    cams = data.cameras
    scene_type = requested if requested != "auto" else detect_scene_type(cams.c2w, data.images.shape[-1] == 4)
    points = data.points.xyz if getattr(data, "points", None) is not None else None
    near = nearest_depth(cams.c2w, points, getattr(data, "near_far", None))
    if scene_type == "forward" and near is None:
        if requested == "forward":
            raise OmnifieldError("--scene-type forward needs the capture's depth bounds (LLFF poses_bounds.npy) "
                                 "or sparse points to place the near plane")
        scene_type = "unbounded"  # no depth known: contraction needs none
    return scene_type, choose_space(scene_type, cams.c2w, cams.fx, cams.fy, cams.width, cams.height, near)


def build_configs(args: argparse.Namespace, space: dict | None = None) -> tuple[object, object, TrainConfig]:
    """Typed configs from the options: the scene's ``space`` settings first, then every ``--set``."""
    space = dict(space or {})
    field_changes = space.pop("field", {})
    try:
        train_cfg = TrainConfig(steps=args.steps, minutes=args.minutes, lr=args.lr, batch_rays=args.batch_rays,
                                target_samples=args.target_samples, seed=args.seed, grad_clip=args.grad_clip,
                                s3im_weight=args.s3im_weight, camera_opt=args.camera_opt,
                                appearance_dim=args.appearance_dim, distortion_weight=args.distortion_weight,
                                depth_weight=args.loss_depth_weight)
        renderer_cfg = VolumeRendererConfig(**space, **sampler_settings(args.sampler, space.get("space", "box")))
    except ValueError as exc:
        raise OmnifieldError(f"invalid option: {exc}") from None
    field_cfg = replace_config(field_config(args.method), **field_changes)
    roots = apply_section_overrides({"field": field_cfg, "renderer": renderer_cfg, "train": train_cfg},
                                    args.set or [])
    return roots["field"], roots["renderer"], roots["train"]


def refuse_changed_run_settings(args: argparse.Namespace, run: Run) -> None:
    """One line (exit 2) when ``train --resume`` gives a setting, or a ``--set``, that differs from the run's
    (a resumed run continues with its own; only its budget changes)."""
    stored = {f.name: getattr(run.train_config, f.name) for f in fields(run.train_config)}
    stored.update(downscale=run.downscale, sampler=run.renderer_config.sampler, loss_depth_weight=stored["depth_weight"])
    scene_of_space = {space: scene for scene, space in SPACE_OF_SCENE.items()}
    if run.renderer_config.space in scene_of_space:
        stored["scene_type"] = scene_of_space[run.renderer_config.space]
    refuse_changed_settings(args, stored, str(args.out))
    if args.set:
        roots = {"field": run.field_config, "renderer": run.renderer_config, "train": run.train_config}
        changed = apply_section_overrides(roots, args.set)
        differing = [section for section in roots if changed[section] != roots[section]]
        if differing:
            raise OmnifieldError(f"--set {' '.join(args.set)}: changes the {' and '.join(differing)} settings, which "
                                 f"{args.out} keeps on --resume (--steps and --minutes set the budget)")


def train_nerf(args: argparse.Namespace, watch: Watch | None = None) -> int:
    """Train the radiance field ``args`` describe into ``args.out`` (claimed by the caller), then evaluate it.
    ``watch(run, engine)``, a context-manager factory, is entered around the training (the live viewer).

    Under ``torchrun --nproc_per_node N -m omnifield train ...`` the N processes train one run
    together (data parallel); rank 0 prints, writes the run folder and evaluates.
    """
    device = resolve_device(args.device)
    group = distributed.init_from_environment(device)
    try:
        with build_on(device):
            return _train(args, group, device, watch)
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace, group: distributed.ProcessGroup, device: torch.device,
           watch: Watch | None) -> int:
    say = print if group.is_main else (lambda *a, **k: None)
    data_dir = Path(args.data)
    out = Path(args.out)
    if args.resume:
        run, tensors, meta = Run.open(out)
        refuse_changed_run_settings(args, run)
        run.to(device)
        train_data = load_scene(data_dir, "train", run.downscale)
        run.training_views(train_data.cameras)  # the run's per-view state must fit these views
        run.train_config = replace_config(run.train_config, steps=args.steps, minutes=args.minutes)
        trainer = Trainer(run, train_data, progress=not args.quiet, tensorboard=args.log == "tensorboard")
        trainer.resume(tensors, meta)
        say(f"resuming {out} at step {trainer.step}")
    else:
        field_cfg, _, _ = build_configs(args)  # bad options are refused before any data is read
        check_field_fits(field_cfg, f"--method {args.method}")
        train_data = load_scene(data_dir, "train", args.downscale)
        scene_type, space = scene_space(train_data, args.scene_type)
        field_cfg, renderer_cfg, train_cfg = build_configs(args, space)
        run = Run.create(out, args.method, field_cfg, renderer_cfg, train_cfg, str(data_dir), args.downscale,
                         train_data).to(device)
        sparse, depth_note = _depth_samples(run, train_data, explicit=train_cfg.depth_weight > 0)
        trainer = Trainer(run, train_data, progress=not args.quiet, tensorboard=args.log == "tensorboard",
                          sparse_depth=sparse)
        n_params = sum(p.numel() for p in run.field.parameters())
        ranks = f", {group.world_size} processes" if group.active else ""
        ranks += f", on {device}" if device.type != "cpu" else ""
        say(f"training {args.method} ({n_params / 1e6:.2f} M parameters) on {data_dir} "
            f"({len(train_data.images)} views, {train_data.cameras.width}x{train_data.cameras.height}{ranks}, "
            f"{scene_type} scene: {renderer_cfg.space} space, {sampling_summary(renderer_cfg)}) -> {out}")
        note = missing_cuda_library_note(device, "nerfacc", "ray marching and compositing")
        if note:
            say(note)
        tcfg = run.train_config
        say(f"pose refinement {'on (SE3)' if run.camera_opt is not None else 'off'}, appearance codes "
            f"{f'on ({tcfg.appearance_dim} values per view)' if tcfg.appearance_dim > 0 else 'off'}, distortion loss "
            f"{f'{tcfg.distortion_weight:g}' if tcfg.distortion_weight > 0 else 'off'}, sparse depth loss {depth_note}")
        if trainer.hull_fraction < 1.0:
            say(f"alpha masks: the visual hull keeps {100 * trainer.hull_fraction:.1f}% of the occupancy grid")
    if group.is_main:
        out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with watch(run, trainer.engine) if watch is not None and group.is_main else contextlib.nullcontext():
        trainer.fit(out / "log.jsonl")
    say(f"trained {trainer.step} steps in {trainer.elapsed:.0f} s of training ({time.perf_counter() - t0:.0f} s wall)")
    if not args.no_eval and group.is_main:
        return _evaluate_and_report(run, data_dir, "test", out, trainer.step, trainer.elapsed)
    return 0


def _depth_samples(run: Run, train_data, explicit: bool) -> tuple[SparseDepth | None, str]:
    """The sparse depth loss's samples for a new ``run`` (:func:`training_depths`; where too few points are found,
    None and the loss off, or with an ``explicit`` weight an error) and how the training header names them.
    Triangulation happens here, outside the time budget, as the splats' does."""
    if run.train_config.depth_weight <= 0:
        return None, "off"
    points = getattr(train_data, "points", None)
    tracked = points is not None and points.tracks is not None
    sparse = training_depths(train_data.images, train_data.cameras, points, triangulate=True, required=explicit,
                             option="--loss.depth-weight")
    if sparse is None:
        run.train_config = replace_config(run.train_config, depth_weight=0.0)
        return None, "off"
    source = "the capture's points" if tracked else "points triangulated from the training photos"
    return sparse, f"{run.train_config.depth_weight:g} ({len(sparse)} samples of {source})"


def _chunk_rays(args: argparse.Namespace) -> int:
    if args.chunk_rays < 1:
        raise OmnifieldError(f"--chunk-rays must be >= 1, got {args.chunk_rays}")
    return args.chunk_rays


def _evaluate_and_report(run: Run | SplatRun, data_dir: Path, split: str, out: Path, step: int | None = None,
                         train_seconds: float | None = None, chunk: int = 8192, coverage_views: int = 0) -> int:
    data = load_scene(data_dir, split, run.downscale)
    coverage = None
    if coverage_views > 0:
        if run.kind != "field":
            raise OmnifieldError("--coverage needs a radiance-field run (it reads where the run's rays stop)")
        train_cameras, _ = run.training_views(load_scene(data_dir, "train", run.downscale).cameras)
        coverage = Coverage(run, train_cameras, lambda cams, j: run.render(cams, j, WHITE, chunk=chunk), coverage_views)
    metrics = evaluate(run, data, out / "renders" / split, chunk=chunk, training_views=split == "train",
                       coverage=coverage)
    metrics.update(split=split, step=step, train_seconds=train_seconds, method=run.method)
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    spr = f"{metrics['samples_per_ray']:.1f} samples/ray, " if "samples_per_ray" in metrics else ""
    print(f"{split}: PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} over {metrics['n_views']} views "
          f"({spr}{metrics['seconds_per_frame']:.2f} s/frame); renders in {out / 'renders' / split}")
    if coverage is not None:
        c = metrics["coverage"]
        dbs = " and ".join(f"{c[k]:.2f} dB {where}" for k, where in (("psnr_covered", "there"),
                                                                      ("psnr_uncovered", "elsewhere"))
                           if c[k] is not None)
        print(f"coverage: {100 * c['covered']:.0f} % of the pixels seen by >= {coverage_views} training views "
              f"(mean over views); PSNR {dbs}; <name>_coverage.png tints the rest red")
    return 0


def _output_folder(args: argparse.Namespace) -> Path:
    """Where a command over a run writes: ``--out``, else the run folder (the folder of a ``.ofz`` file)."""
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise OmnifieldError(f"--out {out}: exists and is not a folder")
        return out
    path = Path(args.run)
    return path.parent if path.suffix == ".ofz" else path


def _data_dir(args: argparse.Namespace, run: Run | SplatRun) -> Path:
    """``--data``, else the scene folder the run was trained on (refused when the run does not name one)."""
    if not (args.data or run.data_dir):
        raise OmnifieldError(f"{args.run}: the run names no scene folder; pass --data")
    return Path(args.data or run.data_dir)


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a trained run on a split of its data (or of --data)."""
    chunk = _chunk_rays(args)
    device = resolve_device(args.device)
    with build_on(device):
        run = open_run(args.run)
    run.to(device)
    if args.coverage < 0:
        raise OmnifieldError(f"--coverage must be >= 0, got {args.coverage}")
    return _evaluate_and_report(run, _data_dir(args, run), args.split, _output_folder(args), run.step, chunk=chunk,
                                coverage_views=args.coverage)


def cmd_render(args: argparse.Namespace) -> int:
    """Render test views (with depth), an orbit video and/or a video along a camera path file."""
    chunk = _chunk_rays(args)
    if not 1 <= args.frames <= MAX_ORBIT_FRAMES:
        raise OmnifieldError(f"--frames must be in 1..{MAX_ORBIT_FRAMES}, got {args.frames}")
    if args.fps is not None and args.fps < 1:
        raise OmnifieldError(f"--fps must be >= 1, got {args.fps}")
    device = resolve_device(args.device)
    with build_on(device):
        run = open_run(args.run)
    run.to(device)
    out = _output_folder(args)
    data_dir = _data_dir(args, run)
    if args.camera_path:
        from omnifield.apps.recon.evaluate import render_cameras
        from omnifield.data.camera_path import read_camera_path
        from omnifield.data.scene import scene_normalization
        from omnifield.io.video import write_video

        camera_path = read_camera_path(args.camera_path, scene_normalization(data_dir))
        cams = camera_path.cameras
        require_memory(len(cams) * cams.width * cams.height * 3,
                       f"--camera-path: {len(cams)} frames of {cams.width}x{cams.height}")
        frames = render_cameras(run, cams, chunk=chunk)
        video = write_video(out / f"{Path(args.camera_path).stem}.mp4", frames, fps=args.fps or camera_path.fps or 24)
        print(f"wrote {len(frames)} frames along {args.camera_path} to {video}")
    if args.camera_path and not (args.orbit or args.orbit_only):
        return 0
    data = load_scene(data_dir, args.split, run.downscale)
    if args.orbit or args.orbit_only:  # the frames are kept in memory until the video is written
        require_memory(args.frames * data.cameras.width * data.cameras.height * 3,
                       f"--frames {args.frames}: an orbit of {data.cameras.width}x{data.cameras.height} frames")
    if not (args.orbit_only or args.camera_path):
        evaluate(run, data, out / "renders" / args.split, chunk=chunk, training_views=args.split == "train")
        depth = " and depth images" if run.kind == "field" else ""
        print(f"wrote {len(data.images)} renders{depth} to {out / 'renders' / args.split}")
    if args.orbit or args.orbit_only:
        path = render_orbit(run, data.cameras, out / "orbit.mp4", n_frames=args.frames, fps=args.fps or 24,
                            chunk=chunk)
        print(f"wrote orbit video {path}")
    return 0


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` options of a radiance-field run (data, budget, optimiser, renderer, ``--set``)."""
    p.add_argument("data", help="scene folder: Blender (transforms_train/test.json), transforms.json (Instant-NGP, nerfstudio), "
                   "COLMAP (sparse/0 + images) or LLFF (poses_bounds.npy + images)")
    p.add_argument("--method", default=None,
                   help=f"field backend: {', '.join(field_names())}, or splat (3D Gaussian splatting); default "
                        "hashgrid, or with --resume the method of the run in --out")
    p.add_argument("--out", help="run folder (default: outputs/<scene>-<method>)")
    p.add_argument("--downscale", type=int, default=1, help="integer factor to shrink images on load (default 1)")
    p.add_argument("--steps", type=int, default=20000, help="maximum optimisation steps (default 20000)")
    p.add_argument("--minutes", type=float, default=0.0, help="training time budget in minutes (0 = none)")
    p.add_argument("--lr", type=float, default=1e-2, help="peak Adam learning rate (default 1e-2)")
    p.add_argument("--batch-rays", type=int, default=4096, help="initial rays per step (then adapted)")
    p.add_argument("--target-samples", type=int, default=1 << 16,
                   help="samples per step the ray count adapts to (0 = fixed ray count)")
    p.add_argument("--sampler", choices=["auto", *SAMPLERS], default="auto",
                   help="occupancy: march through the cells of an occupancy grid, ending rays behind surfaces; "
                        "proposal: small density fields place a few samples per ray (mip-NeRF 360, nerfacto); "
                        "uniform: even samples (vanilla NeRF); default auto: occupancy for objects, proposal "
                        "for photos of forward-facing and unbounded scenes")
    p.add_argument("--scene-type", choices=["auto", *SCENE_TYPES], default="auto",
                   help="object: inside a box, white background where alpha is 0; forward: forward-facing "
                        "capture in NDC; unbounded: 360-degree capture with contracted space (default auto: "
                        "object when images have alpha, forward when all cameras look the same way, else unbounded)")
    p.add_argument("--grad-clip", type=float, default=0.0, help="clip the gradient norm (0 = off)")
    p.add_argument("--loss.s3im-weight", dest="s3im_weight", type=float, default=0.0,
                   help="weight of the S3IM stochastic structural similarity loss (paper: 1.0; 0 = off)")
    p.add_argument("--loss.distortion-weight", dest="distortion_weight", type=float, default=-1.0,
                   help="weight of mip-NeRF 360's distortion loss, which gathers each ray's weight into one short "
                        f"stretch (against fog and floaters); -1 = auto: {DISTORTION_WEIGHT_PHOTOS:g} for photos "
                        "(forward-facing and unbounded captures), 0 for objects (default -1)")
    p.add_argument("--loss.depth-weight", dest="loss_depth_weight", metavar="DEPTH_WEIGHT", type=float, default=-1.0,
                   help="weight of the sparse depth loss (depth-supervised NeRF): rays through the structure-from-"
                        "motion points of the training views (the capture's, or triangulated from the photos) should "
                        f"stop at them; -1 = auto: {DEPTH_WEIGHT_PHOTOS:g} for photos (forward-facing and unbounded "
                        "captures), 0 for objects (default -1)")
    p.add_argument("--camera-opt", choices=["auto", "off", "SE3"], default="auto",
                   help="refine each training pose by a learned SE(3) correction; auto = off (held-out views keep "
                        "their given poses, so refined training poses that drift together hurt them) (default auto)")
    p.add_argument("--appearance-dim", type=int, default=-1,
                   help="size of each training view's appearance code (exposure, white balance); 0 = off, "
                        "-1 = auto: off (held-out views get the mean code, which measured worse) (default -1)")
    p.add_argument("--seed", type=int, default=0, help="random seed; CPU runs with --steps are repeatable")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_log_argument(p)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config value, e.g. field.encoding.log2_hashmap_size=17 (repeatable)")


def _add_run_arguments(p: argparse.ArgumentParser, split_use: str) -> None:
    """The options of a command over a trained run: the folder, ``--data``, ``--split``, chunk and device."""
    p.add_argument("run", help="run folder written by 'omnifield train' (a field or a splat run), or a Compact-3DGS "
                              ".ofz file")
    p.add_argument("--data", help="scene folder (default: the one the run was trained on)")
    p.add_argument("--split", default="test", help=SPLIT_HELP.format(what=split_use))
    p.add_argument("--chunk-rays", type=int, default=8192, help=CHUNK_HELP)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--out", help="folder for what the command writes (default: the run folder; for a .ofz file, "
                                 "its folder)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval`` and ``render`` sub-commands (``train`` is :mod:`omnifield.apps.train.cli`)."""
    p = sub.add_parser("eval", help="evaluate a trained run (PSNR, SSIM) and write renders",
                       description="Render every view of a split, compare with ground truth on white, write "
                                   "metrics.json and side-by-side PNGs.")
    _add_run_arguments(p, "to evaluate")
    p.add_argument("--coverage", type=int, default=0, metavar="K",
                   help="also score each view on the pixels whose surface (where the run's rays stop) at least K "
                        "training views see, unoccluded, and on the rest, and write <name>_coverage.png with the "
                        "rest tinted red: how much of a held-out view the photos covered (radiance-field runs; "
                        "renders every training view once; default 0 = off)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("render", help="render test views with depth, and an orbit video",
                       description="Render the views of a split (RGB and depth PNGs) and, with --orbit, an orbit "
                                   "video (mp4, or gif when no ffmpeg) around the scene.")
    _add_run_arguments(p, "whose views to render")
    p.add_argument("--orbit", action="store_true", help="also render an orbit video")
    p.add_argument("--orbit-only", action="store_true", help="render only the orbit video")
    p.add_argument("--frames", type=int, default=60, help="orbit frames (default 60)")
    p.add_argument("--fps", type=int, default=None,
                   help="video frames per second (default: the camera path's fps, else 24)")
    p.add_argument("--camera-path", metavar="FILE",
                   help="render a video along a camera path instead of the split's views, written as <FILE name>.mp4 "
                        "in the output folder: nerfstudio's camera_path.json or the transforms.json layout, poses in the data's "
                        "world coordinates")
    p.set_defaults(func=cmd_render)
