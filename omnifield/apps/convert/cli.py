"""``omnifield convert RUN_DIR --method FIELD``: distil a trained run into another field architecture.

Teacher: a radiance-field run (``omnifield train``) or a splat run (``--method splat``). Student: any
registered field preset (PVD, :mod:`omnifield.distill.pvd`) or ``splat`` (:mod:`.to_splat`). The output
is a normal run folder; a final table compares teacher and student PSNR on the test split.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from omnifield.cli_options import add_method_argument, declare_applicability, refuse_inapplicable, require_method
from omnifield.config import config_to_dict, replace_config
from omnifield.engine import LoopConfig
from omnifield.errors import OmnifieldError
from omnifield.fields.footprint import check_field_fits
from omnifield.io.run_folder import claim_output

SPLAT = "splat"
GRID_PASSES = 8  # occupancy-grid passes over a splat teacher's density (lego: 3.9 % -> 4.8 % of cells)

EPILOG = """examples:
  omnifield convert outputs/lego --method triplane --steps 3000
  omnifield convert outputs/lego --method mlp --steps 3000 --al --out outputs/lego-mlp
  omnifield convert outputs/lego-splat --method hashgrid --steps 2000
  omnifield convert outputs/lego --method splat --steps 2000
"""


@dataclass
class Teacher:
    """A loaded teacher: the field (``RadianceField`` or ``GaussianScene``), a sampler describing it."""

    field: torch.nn.Module
    sampler: Any  # VolumeRenderer with the teacher's occupancy grid
    data_dir: str
    kind: str  # "field" or "splat"
    run: Any = None  # the recon Run of a field teacher
    downscale: int = 1  # the image downscale the teacher was trained at


def load_teacher(run_dir: Path, grid_resolution: int = 64) -> Teacher:
    """Open a radiance-field or splat run folder as a teacher."""
    from omnifield.apps.recon.run import CONFIG, Run

    config_path = run_dir / CONFIG
    if not config_path.is_file():
        raise OmnifieldError(f"{run_dir}: not a run folder (no {CONFIG})")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise OmnifieldError(f"{config_path}: not valid JSON ({exc})") from None
    if config.get("method") == SPLAT:
        from omnifield.io.splat_run import load_splat_run
        from omnifield.renderers.occupancy import OccupancyGridConfig
        from omnifield.renderers.volume import VolumeRenderer, VolumeRendererConfig

        scene = load_splat_run(run_dir)
        aabb = config.get("options", {}).get("aabb") or [-1.5, -1.5, -1.5, 1.5, 1.5, 1.5]
        sampler = VolumeRenderer(aabb, VolumeRendererConfig(grid=OccupancyGridConfig(resolution=grid_resolution)))
        for _ in range(GRID_PASSES):  # one jittered point per cell and pass: thin Gaussians need several
            sampler.grid.update(0, scene.density, sampler.step_size)
        scene.aabb = torch.tensor(aabb, dtype=torch.float32)
        downscale = int(config.get("options", {}).get("downscale", 1))
        return Teacher(scene, sampler, config.get("data", ""), SPLAT, downscale=downscale)
    run, _, _ = Run.open(run_dir)
    return Teacher(run.field, run.renderer, run.data_dir, "field", run, run.downscale)


def student_config(name: str, teacher: Teacher, overrides: list[str]) -> Any:
    """The preset ``name`` with the teacher's box and (for field teachers) its colour-head layout."""
    from omnifield.config_overrides import apply_override
    from omnifield.fields.registry import field_config

    cfg = field_config(name)
    shared: dict[str, Any] = {"aabb": tuple(float(v) for v in teacher.sampler.aabb.tolist())}
    if teacher.kind == "field":
        t = teacher.run.field_config
        shared.update(color_decoder=t.color_decoder, geo_feat_dim=t.geo_feat_dim, sh_degree=t.sh_degree)
    cfg = replace_config(cfg, **shared)
    for assignment in overrides:
        if assignment.startswith("field."):
            cfg = apply_override(cfg, assignment.split(".", 1)[1], "field")
        elif not assignment.startswith("loop."):
            raise OmnifieldError(f"--set {assignment!r}: convert accepts only field.* and loop.* overrides")
    return cfg


def loop_config(steps: int, minutes: float, progress: bool, overrides: list[str]) -> LoopConfig:
    """The conversion's training loop: the budget, then any ``loop.*`` overrides (e.g. checkpoint_every_s)."""
    from omnifield.config_overrides import apply_override

    loop = LoopConfig(steps=steps, minutes=minutes, log_every=25, progress=progress)
    for assignment in overrides:
        if assignment.startswith("loop."):
            loop = apply_override(loop, assignment.split(".", 1)[1], "loop")
    loop.check()
    return loop


def _evaluate_field(field, renderer, data, limit) -> dict[str, Any]:
    from omnifield.apps.recon.evaluate import evaluate
    from omnifield.apps.recon.run import Run

    probe = Run(Path("."), field, renderer, None, None, None, "", "")
    return evaluate(probe, data, limit=limit, progress=False)


def _evaluate_splat(scene, data, limit) -> dict[str, Any]:
    from omnifield.apps.splat.train import evaluate_splat
    from omnifield.renderers.splat.renderer import SplatRenderer

    n = len(data.images) if limit is None else min(limit, len(data.images))
    subset = type(data)(**{**data.__dict__, "images": data.images[:n], "cameras": data.cameras[torch.arange(n)],
                           "names": data.names[:n]})
    return evaluate_splat(scene, subset, SplatRenderer(background=(1.0, 1.0, 1.0)))


def evaluate_any(kind: str, field, renderer, data, limit: int | None) -> dict[str, Any]:
    """Test-split PSNR/SSIM of a field (through ``renderer``) or a splat scene."""
    return _evaluate_splat(field, data, limit) if kind == SPLAT else _evaluate_field(field, renderer, data, limit)


def print_table(rows: list[dict[str, Any]]) -> None:
    """The teacher vs student table."""
    print(f"{'':8} {'field':>10} {'PSNR (dB)':>10} {'SSIM':>7} {'seconds':>8}")
    for r in rows:
        print(f"{r['role']:8} {r['field']:>10} {r['psnr']:>10.2f} {r['ssim']:>7.4f} {r.get('seconds', 0):>8.0f}")


def convert(run_dir: Path, to: str, out: Path, steps: int, active: bool = False, minutes: float = 0.0,
            batch_rays: int = 2048, lr: float = 1e-2, seed: int = 0, eval_views: int | None = None,
            overrides: list[str] | None = None, data_dir: str | None = None, n_gaussians: int = 20000,
            progress: bool = True, resume: bool = False, teacher_views: int = 64) -> list[dict[str, Any]]:
    """Distil the run in ``run_dir`` into field ``to`` written to ``out``; returns the teacher/student rows.
    ``n_gaussians`` and ``teacher_views`` shape a splat student (:mod:`.to_splat`)."""
    from omnifield.apps.convert.to_splat import SplatDistillConfig, distill_to_splat
    from omnifield.apps.recon.config import TrainConfig
    from omnifield.apps.recon.run import Run
    from omnifield.data.scene import load_scene
    from omnifield.distill.active import ActiveConfig
    from omnifield.distill.pvd import PVDConfig, distill
    from omnifield.io.atomic import write_text_atomic

    splat_cfg = SplatDistillConfig(n_gaussians=n_gaussians, teacher_views=teacher_views, seed=seed)
    if to == SPLAT:
        splat_cfg.check()
    claim_output(out, "splat run" if to == SPLAT else f"{to} NeRF run", continues=resume,
                 hint="pass --resume to continue it")
    torch.manual_seed(seed)
    teacher = load_teacher(run_dir)
    data_dir = data_dir or teacher.data_dir
    train = load_scene(data_dir, "train", teacher.downscale)
    test = load_scene(data_dir, "test", teacher.downscale)
    t0 = time.perf_counter()
    if to == SPLAT:
        if teacher.kind == SPLAT:
            raise OmnifieldError(f"{run_dir}: already a splat run; convert it to a field preset instead")
        record = {"method": SPLAT, "data": str(data_dir), "distilled_from": str(run_dir),
                  "options": {"aabb": teacher.sampler.aabb.tolist(), "downscale": teacher.downscale}}
        student, engine = distill_to_splat(teacher.field, teacher.sampler, train, splat_cfg,
                                           loop_config(steps, minutes, progress, overrides or []), out, record,
                                           resume)
        info = {"steps": engine.step}
        student_renderer = None
    else:
        try:
            pvd = PVDConfig(steps=steps, minutes=minutes, lr=lr, batch_rays=batch_rays, seed=seed,
                            active=ActiveConfig.all_on() if active else ActiveConfig())
        except ValueError as exc:
            raise OmnifieldError(f"invalid option: {exc}") from None
        if resume:
            run = Run.open(out)[0]
        else:
            cfg = student_config(to, teacher, overrides or [])
            check_field_fits(cfg, f"--method {to}")
            run = Run.create(out, to, cfg, teacher.sampler.cfg, TrainConfig(steps=steps), str(data_dir))
            run.renderer.load_state_dict(teacher.sampler.state_dict())
        extra = {"distilled_from": str(run_dir), "pvd": config_to_dict(pvd)}
        loop = loop_config(steps, minutes, progress, overrides or [])
        distiller = distill(teacher.field, run.field, teacher.sampler, train.cameras, pvd, loop, out, resume,
                            save=lambda step, tensors, meta: run.save(step, tensors, {**meta, **extra}))
        student, student_renderer, info = run.field, run.renderer, {"steps": distiller.step}
    seconds = time.perf_counter() - t0
    rows = []
    teacher_name = teacher.run.method if teacher.run else SPLAT
    student_kind = SPLAT if to == SPLAT else "field"
    for role, kind, f, renderer, name in (("teacher", teacher.kind, teacher.field, teacher.sampler, teacher_name),
                                          ("student", student_kind, student, student_renderer, to)):
        m = evaluate_any(kind, f, renderer, test, eval_views)
        rows.append({"role": role, "field": name, "psnr": m["psnr"], "ssim": m["ssim"], "n_views": m["n_views"]})
    rows[1].update(seconds=seconds, steps=info["steps"])
    metrics = {"split": "test", "method": to, "psnr": rows[1]["psnr"], "ssim": rows[1]["ssim"],
               "teacher_psnr": rows[0]["psnr"], "step": info["steps"], "train_seconds": seconds,
               "distilled_from": str(run_dir), "active_learning": active}
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    return rows


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a trained run into another field architecture and compare them."""
    run_dir = Path(args.run)
    to = require_method(args, "the student's field preset, or splat (see omnifield convert --help)")
    refuse_inapplicable(args, to)
    out = Path(args.out) if args.out else run_dir.with_name(f"{run_dir.name}-{to}")
    for option, value in (("--steps", args.steps), ("--teacher-views", args.teacher_views),
                          ("--eval-views", 1 if args.eval_views is None else args.eval_views)):
        if value < 1:
            raise OmnifieldError(f"{option} must be >= 1, got {value}")
    rows = convert(run_dir, to, out, args.steps, args.al, args.minutes, args.batch_rays, args.lr, args.seed,
                   args.eval_views, args.set or [], args.data, args.n_gaussians, progress=not args.quiet,
                   resume=args.resume, teacher_views=args.teacher_views)
    print_table(rows)
    gap = rows[1]["psnr"] - rows[0]["psnr"]
    print(f"student - teacher: {gap:+.2f} dB; run written to {out}" if math.isfinite(gap) else f"run written to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``convert`` sub-command."""
    from omnifield.fields.registry import field_names

    p = sub.add_parser("convert", help="distil a trained run into another field architecture (PVD, PVD-AL)",
                       description="Distil a trained radiance-field or splat run into another architecture "
                                   "(PVD; --al adds PVD-AL active learning) and compare teacher and student.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="teacher run folder (omnifield train, any --method including splat)")
    add_method_argument(p, "student: a field preset or splat (required)", choices=[*field_names(), SPLAT],
                        old_names=("--to",))
    p.add_argument("--out", help="student run folder (default: <run>-<method> next to the teacher)")
    p.add_argument("--steps", type=int, default=3000, help="distillation steps (default 3000)")
    p.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget in minutes (0 = none)")
    p.add_argument("--al", action="store_true", help="PVD-AL: image-, ray- and point-level active learning")
    p.add_argument("--batch-rays", type=int, default=2048, help="rays per step (default 2048)")
    p.add_argument("--lr", type=float, default=1e-2, help="peak Adam learning rate (default 1e-2)")
    p.add_argument("--n-gaussians", type=int, default=20000, help="Gaussians of a splat student (default 20000)")
    p.add_argument("--teacher-views", type=int, default=64,
                   help="views of the teacher a splat student is fitted to, half training cameras and half "
                        "random sphere poses, each rendered when first used (default 64)")
    p.add_argument("--data", help="scene folder (default: the teacher's)")
    p.add_argument("--eval-views", type=int, help="evaluate on the first N test views only (default: all)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a student field setting (field.KEY=VALUE) or a loop setting "
                        "(loop.checkpoint_every_s=30, loop.log_every=10); repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--resume", action="store_true",
                   help="continue the conversion in --out from its checkpoint (a splat conversion keeps its "
                        "--n-gaussians, --teacher-views and --seed)")
    fields = frozenset(field_names())
    declare_applicability(p, {"al": fields, "batch_rays": fields, "lr": fields, "n_gaussians": {SPLAT},
                              "teacher_views": {SPLAT}})
    p.set_defaults(func=cmd_convert)
