"""PVD conversion between field architectures on a Blender scene, against training from scratch.

A hash-grid teacher is trained on the images; then for each student (MLP, tri-plane, NeuRBF, ...):

- ``pvd``: the student distilled from the teacher for ``--student-minutes`` of wall clock;
- ``scratch``: the same student trained on the images for the same wall clock (the baseline);
- ``pvd-al`` (first student only): PVD-AL (image + ray + point level) at the same number of steps as
  a plain ``pvd`` run of ``--al-steps`` steps, side by side;
- ``splat`` (with ``--splat``): Gaussians fitted to the teacher's renders for the same wall clock.

PSNR/SSIM on the first ``--eval-views`` test views (on white). Peak RSS is the process's maximum so far.
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

from omnifield.apps.recon.config import TrainConfig
from omnifield.apps.recon.evaluate import evaluate
from omnifield.apps.recon.run import Run
from omnifield.apps.recon.trainer import Trainer
from omnifield.data.blender import PosedImages, load_blender
from omnifield.distill.active import ActiveConfig
from omnifield.distill.cli import evaluate_any, student_config, Teacher
from omnifield.distill.pvd import Distiller, PVDConfig
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


def distill(teacher: Teacher, name: str, train: PosedImages, folder: Path, steps: int, minutes: float,
            active: bool, seed: int, tag: str, batch_rays: int) -> tuple[Run, int, float]:
    """PVD (or PVD-AL) of ``teacher`` into preset ``name``; returns (run, steps, seconds)."""
    al = ActiveConfig.all_on() if active else ActiveConfig()
    cfg = PVDConfig(steps=steps, minutes=minutes, seed=seed, batch_rays=batch_rays, active=al)
    run = Run.create(folder / f"{tag}-{name}", name, student_config(name, teacher, []), teacher.sampler.cfg,
                     TrainConfig(steps=steps), "")
    run.renderer.load_state_dict(teacher.sampler.state_dict())
    distiller = Distiller(teacher.field, run.field, teacher.sampler, train.cameras, cfg)
    t0 = time.perf_counter()
    distiller.fit(progress=False)
    return run, distiller.step, time.perf_counter() - t0


def row(pair: str, method: str, steps: int, seconds: float, metrics: dict, teacher_psnr: float | None) -> dict:
    r = {"pair": pair, "method": method, "steps": steps, "seconds": round(seconds, 1),
         "psnr": round(metrics["psnr"], 2), "ssim": round(metrics["ssim"], 4), "peak_rss_mb": round(peak_rss_mb())}
    r["vs_teacher_db"] = None if teacher_psnr is None else round(metrics["psnr"] - teacher_psnr, 2)
    print(f"{pair:22} {method:8} {steps:>6} {r['seconds']:>8.1f} {r['psnr']:>7.2f} {r['ssim']:>7.4f} "
          f"{'' if r['vs_teacher_db'] is None else format(r['vs_teacher_db'], '+.2f'):>8} {r['peak_rss_mb']:>7}",
          flush=True)
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/lego_200")
    p.add_argument("--quick", action="store_true", help="tiny budgets (<= 2 min): 50x50 images, seconds per run")
    p.add_argument("--out", help="write the table as a JSON list of rows")
    p.add_argument("--teacher-minutes", type=float, default=5.0)
    p.add_argument("--student-minutes", type=float, default=2.0)
    p.add_argument("--al-steps", type=int, default=500)
    p.add_argument("--students", default="mlp,triplane,neurbf")
    p.add_argument("--splat", action="store_true", help="also fit Gaussians to the teacher")
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
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train = load_blender(args.data, "train", args.downscale)
    test = load_blender(args.data, "test", args.downscale)
    limit = args.eval_views
    rows = []
    print(f"{'pair':22} {'method':8} {'steps':>6} {'seconds':>8} {'PSNR':>7} {'SSIM':>7} {'vs teach':>8} {'RSS MB':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t_run, t_steps, t_sec = train_scratch("hashgrid", train, args.teacher_minutes, folder, args.seed, args.grid,
                                               args.batch_rays)
        teacher = Teacher(t_run.field, t_run.renderer, "", "field", t_run)
        t_metrics = evaluate(t_run, test, limit=limit, progress=False)
        rows.append(row("hashgrid (teacher)", "images", t_steps, t_sec, t_metrics, None))
        for name in [s for s in args.students.split(",") if s]:
            pair = f"hashgrid -> {name}"
            run, steps, sec = distill(teacher, name, train, folder, 1_000_000, args.student_minutes, False,
                                      args.seed, "pvd", args.batch_rays)
            rows.append(row(pair, "pvd", steps, sec, evaluate(run, test, limit=limit, progress=False),
                            t_metrics["psnr"]))
            run, steps, sec = train_scratch(name, train, args.student_minutes, folder, args.seed, args.grid,
                                            args.batch_rays)
            rows.append(row(pair, "scratch", steps, sec, evaluate(run, test, limit=limit, progress=False),
                            t_metrics["psnr"]))
        first = args.students.split(",")[0]
        for method, active in (("pvd", False), ("pvd-al", True)):
            run, steps, sec = distill(teacher, first, train, folder, args.al_steps, 0.0, active, args.seed, method,
                                      args.batch_rays)
            rows.append(row(f"hashgrid -> {first} (eq. steps)", method, steps, sec,
                            evaluate(run, test, limit=limit, progress=False), t_metrics["psnr"]))
        if args.splat:
            from omnifield.distill.to_splat import distill_to_splat

            scene, info = distill_to_splat(t_run.field, t_run.renderer, train.cameras, 1_000_000, n_gaussians=20000,
                                           minutes=args.student_minutes, seed=args.seed, progress=False)
            rows.append(row("hashgrid -> splat", "fit", info["steps"], info["seconds"],
                            evaluate_any("splat", scene, None, test, limit), t_metrics["psnr"]))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
