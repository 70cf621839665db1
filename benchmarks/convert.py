"""PVD conversion between field architectures on a Blender scene, against training from scratch.

A hash-grid teacher is trained on the images; then for each student (MLP, tri-plane, NeuRBF, CAM, ...):

- ``pvd``: the student distilled from the teacher for ``--student-minutes`` of training time;
- ``scratch``: the same student trained on the images for the same time (the baseline);
- ``to_match_s`` / ``speedup``: the PVD student's PSNR is measured every ``--curve-every`` seconds of
  its training time on the first ``--curve-views`` test views; the first time it reaches the scratch
  student's final PSNR (same views) and scratch time / that time (the paper: 10-20x);
- ``pvd-al`` (first student only): PVD-AL (image + ray + point level) at the same number of steps as
  a plain ``pvd`` run of ``--al-steps`` steps, side by side;
- round trip: the first PVD student distilled back into a hash grid;
- ``splat`` (with ``--splat``): Gaussians fitted to the teacher's renders for the same time;
- ``--splat-teacher RUN``: a trained splat run (``omnifield train --method splat``) as the teacher of a
  hash grid, through ``GaussianScene.density / rgb``.

PSNR/SSIM on the first ``--eval-views`` test views (on white); the teacher is not trained again for
each student, so its time is not counted. Peak RSS is the process's maximum so far.
Timings on a shared machine are pessimistic.

    python benchmarks/convert.py --quick [--data data/lego_200] [--out rows.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from omnifield.apps.convert.cli import Teacher, evaluate_any, load_teacher, student_config
from omnifield.apps.recon.config import TrainConfig
from omnifield.apps.recon.evaluate import evaluate
from omnifield.apps.recon.run import Run
from omnifield.apps.recon.trainer import Trainer
from omnifield.data.blender import PosedImages, load_blender
from omnifield.distill.active import ActiveConfig
from omnifield.distill.pvd import Distiller, PVDConfig
from omnifield.engine import LoopConfig
from omnifield.fields.registry import field_config
from omnifield.renderers.occupancy import OccupancyGridConfig
from omnifield.renderers.volume import VolumeRendererConfig


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_scratch(name: str, train: PosedImages, minutes: float, folder: Path, seed: int, grid: int,
                  batch_rays: int) -> tuple[Run, int, float]:
    """Train preset ``name`` on the images for ``minutes``; returns (run, steps, seconds)."""
    renderer = VolumeRendererConfig(grid=OccupancyGridConfig(resolution=grid))
    run = Run.create(folder / f"scratch-{name}", name, field_config(name), renderer,
                     TrainConfig(steps=1_000_000, minutes=minutes, seed=seed, batch_rays=batch_rays,
                                 checkpoint_every_s=1e9), "")
    trainer = Trainer(run, train, progress=False)
    t0 = time.perf_counter()
    trainer.fit()
    return run, trainer.step, time.perf_counter() - t0


class PsnrCurve:
    """The distiller's evaluation: test PSNR on ``data`` every ``every_s`` seconds of its training time."""

    def __init__(self, data: PosedImages, views: int, every_s: float):
        self.data, self.views, self.every_s = data, views, every_s
        self.points: list[tuple[float, float]] = []  # (training seconds, PSNR)
        self.run: Run | None = None
        self.distiller: Distiller | None = None

    def at_seconds(self, minutes: float) -> tuple[float, ...]:
        """The evaluation times within a budget of ``minutes`` (a step budget: within an hour)."""
        horizon = minutes * 60 if minutes > 0 else 3600.0
        return tuple(self.every_s * k for k in range(1, int(horizon / self.every_s) + 1))

    def __call__(self, step: int) -> dict:
        psnr = evaluate(self.run, self.data, limit=self.views, progress=False)["psnr"]
        self.points.append((self.distiller.elapsed, psnr))
        return {"psnr": psnr}

    def time_to_reach(self, psnr: float) -> float | None:
        """First recorded training time with PSNR >= ``psnr`` (None if never)."""
        return next((t for t, p in self.points if p >= psnr), None)


def distill(teacher: Teacher, name: str, train: PosedImages, folder: Path, steps: int, minutes: float,
            active: bool, seed: int, tag: str, batch_rays: int,
            curve: PsnrCurve | None = None) -> tuple[Run, int, float]:
    """PVD (or PVD-AL) of ``teacher`` into preset ``name``; returns (run, steps, training seconds)."""
    al = ActiveConfig.all_on() if active else ActiveConfig()
    cfg = PVDConfig(steps=steps, minutes=minutes, seed=seed, batch_rays=batch_rays, active=al)
    run = Run.create(folder / f"{tag}-{name}", name, student_config(name, teacher, []), teacher.sampler.cfg,
                     TrainConfig(steps=steps), "")
    run.renderer.load_state_dict(teacher.sampler.state_dict())
    loop = LoopConfig(steps=steps, minutes=minutes, progress=False, checkpoint_every_s=1e9,
                      eval_at_seconds=curve.at_seconds(minutes) if curve is not None else ())
    distiller = Distiller(teacher.field, run.field, teacher.sampler, train.cameras, cfg, loop, evaluate=curve)
    if curve is not None:
        curve.run, curve.distiller = run, distiller
    distiller.fit()
    return run, distiller.step, distiller.elapsed


def row(pair: str, method: str, steps: int, seconds: float, metrics: dict, teacher_psnr: float | None,
        **extra) -> dict:
    r = {"pair": pair, "method": method, "steps": steps, "seconds": round(seconds, 1),
         "psnr": round(metrics["psnr"], 2), "ssim": round(metrics["ssim"], 4), "peak_rss_mb": round(peak_rss_mb())}
    r["vs_teacher_db"] = None if teacher_psnr is None else round(metrics["psnr"] - teacher_psnr, 2)
    r.update(extra)
    fmt = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
    print(f"{pair:30} {method:8} {steps:>6} {r['seconds']:>8.1f} {r['psnr']:>7.2f} {r['ssim']:>7.4f} "
          f"{fmt(r['vs_teacher_db'], '+.2f'):>8} {fmt(extra.get('to_match_s'), '.1f'):>8} "
          f"{fmt(extra.get('speedup'), '.1f'):>7} {r['peak_rss_mb']:>7}", flush=True)
    return r


def pvd_vs_scratch(teacher: Teacher, teacher_label: str, teacher_psnr: float, name: str, train: PosedImages,
                   test: PosedImages, folder: Path, args: argparse.Namespace) -> tuple[list[dict], Run]:
    """PVD and scratch rows for one student, with PVD's time to reach the scratch student's PSNR."""
    pair = f"{teacher_label} -> {name}"
    curve = PsnrCurve(test, args.curve_views, args.curve_every)
    pvd_run, steps, sec = distill(teacher, name, train, folder, 1_000_000, args.student_minutes, False,
                                  args.seed, f"pvd-{teacher_label}", args.batch_rays, curve)
    pvd_metrics = evaluate(pvd_run, test, limit=args.eval_views, progress=False)
    run, s_steps, s_sec = train_scratch(name, train, args.student_minutes, folder / teacher_label, args.seed,
                                        args.grid, args.batch_rays)
    scratch_curve_psnr = evaluate(run, test, limit=args.curve_views, progress=False)["psnr"]
    to_match = curve.time_to_reach(scratch_curve_psnr)
    rows = [row(pair, "pvd", steps, sec, pvd_metrics, teacher_psnr, to_match_s=to_match,
                speedup=None if to_match is None else round(s_sec / to_match, 1),
                curve=[(round(t, 1), round(p, 2)) for t, p in curve.points]),
            row(pair, "scratch", s_steps, s_sec, evaluate(run, test, limit=args.eval_views, progress=False),
                teacher_psnr, curve_views_psnr=round(scratch_curve_psnr, 2))]
    return rows, pvd_run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/lego_200")
    p.add_argument("--quick", action="store_true", help="tiny budgets (<= 2 min): 50x50 images, seconds per run")
    p.add_argument("--out", help="write the table as a JSON list of rows")
    p.add_argument("--teacher-minutes", type=float, default=5.0)
    p.add_argument("--student-minutes", type=float, default=2.0)
    p.add_argument("--al-steps", type=int, default=500)
    p.add_argument("--students", default="mlp,triplane,neurbf,hashgrid_cam")
    p.add_argument("--splat", action="store_true", help="also fit Gaussians to the teacher")
    p.add_argument("--splat-teacher", metavar="RUN", help="a trained splat run: also distil it into a hash grid")
    p.add_argument("--splat-teacher-only", action="store_true",
                   help="run only the --splat-teacher rows (no hash-grid teacher, students, PVD-AL or round trip)")
    p.add_argument("--curve-every", type=float, default=10.0, help="seconds of training time between PSNR probes")
    p.add_argument("--curve-views", type=int, default=4, help="test views of the PSNR probes")
    p.add_argument("--downscale", type=int, default=1)
    p.add_argument("--grid", type=int, default=128, help="occupancy-grid resolution")
    p.add_argument("--batch-rays", type=int, default=1024, help="rays per step (initial value when training)")
    p.add_argument("--eval-views", type=int, default=13)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.quick:
        args.teacher_minutes, args.student_minutes, args.al_steps = 0.4, 0.15, 40
        args.students, args.downscale, args.grid, args.eval_views, args.batch_rays = "mlp,triplane", 4, 64, 2, 512
        args.curve_every, args.curve_views = 2.0, 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train = load_blender(args.data, "train", args.downscale)
    test = load_blender(args.data, "test", args.downscale)
    limit = args.eval_views
    rows = []
    print(f"{'pair':30} {'method':8} {'steps':>6} {'seconds':>8} {'PSNR':>7} {'SSIM':>7} {'vs teach':>8} "
          f"{'to match':>8} {'speedup':>7} {'RSS MB':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.splat_teacher_only:
            rows += field_teacher_rows(train, test, folder, args)
        if args.splat_teacher:
            splats = load_teacher(Path(args.splat_teacher), args.grid)
            s_metrics = evaluate_any("splat", splats.field, None, test, limit)
            rows.append(row("splat (teacher)", "images", 0, 0.0, s_metrics, None))
            rows += pvd_vs_scratch(splats, "splat", s_metrics["psnr"], "hashgrid", train, test, folder, args)[0]
    _save(rows, args.out)


def field_teacher_rows(train: PosedImages, test: PosedImages, folder: Path, args: argparse.Namespace) -> list[dict]:
    """Hash-grid teacher, its students (PVD vs scratch), PVD vs PVD-AL, the round trip and (--splat) splats."""
    limit, rows = args.eval_views, []
    t_run, t_steps, t_sec = train_scratch("hashgrid", train, args.teacher_minutes, folder, args.seed, args.grid,
                                          args.batch_rays)
    teacher = Teacher(t_run.field, t_run.renderer, "", "field", t_run)
    t_metrics = evaluate(t_run, test, limit=limit, progress=False)
    rows.append(row("hashgrid (teacher)", "images", t_steps, t_sec, t_metrics, None))
    students = [s for s in args.students.split(",") if s]
    first_student = None
    for name in students:
        pair_rows, pvd_run = pvd_vs_scratch(teacher, "hashgrid", t_metrics["psnr"], name, train, test, folder, args)
        rows += pair_rows
        _save(rows, args.out)  # finished pairs survive a later failure
        first_student = first_student or (name, pvd_run)
    first = students[0]
    for method, active in (("pvd", False), ("pvd-al", True)):
        run, steps, sec = distill(teacher, first, train, folder, args.al_steps, 0.0, active, args.seed, method,
                                  args.batch_rays)
        rows.append(row(f"hashgrid -> {first} (eq. steps)", method, steps, sec,
                        evaluate(run, test, limit=limit, progress=False), t_metrics["psnr"]))
    name, run = first_student
    back = Teacher(run.field, run.renderer, "", "field", run)
    back_run, steps, sec = distill(back, "hashgrid", train, folder, 1_000_000, args.student_minutes, False,
                                   args.seed, "round-trip", args.batch_rays)
    rows.append(row(f"hashgrid -> {name} -> hashgrid", "pvd", steps, sec,
                    evaluate(back_run, test, limit=limit, progress=False), t_metrics["psnr"]))
    if args.splat:
        from omnifield.apps.convert.to_splat import SplatDistillConfig, distill_to_splat

        scene, engine = distill_to_splat(t_run.field, t_run.renderer, train, SplatDistillConfig(seed=args.seed),
                                         LoopConfig(steps=1_000_000, minutes=args.student_minutes, progress=False),
                                         folder / "splat", {"method": "splat"})
        info = {"steps": engine.step, "seconds": engine.elapsed}
        rows.append(row("hashgrid -> splat", "fit", info["steps"], info["seconds"],
                        evaluate_any("splat", scene, None, test, limit), t_metrics["psnr"]))
    return rows


def _save(rows: list[dict], path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
