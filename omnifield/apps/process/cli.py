"""``omnifield process PHOTOS_DIR_OR_VIDEO --out SCENE``: camera poses from raw photos, as a trainable scene folder.

The scene is built in a temporary folder next to ``--out`` and renamed into place when complete, so ``--out``
never holds a half-written scene; the input is only read.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from omnifield.data.pycolmap_settings import silence_colmap_logging
from omnifield.errors import OmnifieldError
from omnifield.io.atomic import write_text_atomic

REPORT_NAME = "process_report.json"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``process`` sub-command."""
    from omnifield.apps.process.sfm import CAMERA_MODELS, GUIDED, GUIDED_MAX_PAIRS, MATCHERS, SfmOptions

    defaults = SfmOptions()
    p = sub.add_parser(
        "process", help="recover camera poses from photos or a video (COLMAP) into a scene folder for training",
        description="Run structure from motion (SIFT, matching, incremental mapping, undistortion; pycolmap) on "
                    "a folder of photos or a video and write a scene folder that 'omnifield train SCENE' reads: "
                    "images/ (undistorted), images_2/4/8, sparse/0, transforms.json, sparse_pc.ply and "
                    f"{REPORT_NAME}.")
    p.add_argument("input", metavar="PHOTOS_DIR_OR_VIDEO",
                   help="a folder of photos of one camera (jpg/png, one size) or a video file; never modified")
    p.add_argument("--out", required=True, metavar="SCENE", help="scene folder to create; must be absent or empty unless --overwrite")
    p.add_argument("--matcher", choices=MATCHERS, default=defaults.matcher,
                   help="image pairs to match: exhaustive (all pairs), sequential (each image with its next "
                        f"{defaults.sequential_overlap} by name) or auto (exhaustive up to 100 photos, sequential "
                        "for more or for video); default %(default)s")
    p.add_argument("--guided-matching", choices=GUIDED, default=defaults.guided,
                   help="a second round of matching guided by each pair's geometry: several times more matches "
                        "between far-apart photos, about 4x slower matching; auto = on for at most "
                        f"{GUIDED_MAX_PAIRS} image pairs (32 photos matched exhaustively); default %(default)s")
    p.add_argument("--max-image-size", type=int, default=defaults.max_image_size, metavar="PX",
                   help="features are found on images resized to at most this many pixels on the long side "
                        "(larger: more points, slower); default %(default)s")
    p.add_argument("--num-frames", type=int, default=100, metavar="N",
                   help="video input: frames to use, spread evenly, each the sharpest of its window; "
                        "default %(default)s")
    p.add_argument("--camera-model", choices=CAMERA_MODELS, default=defaults.camera_model,
                   help="lens model shared by all images, estimated then undistorted away: OPENCV (fx, fy, "
                        "k1, k2, p1, p2) or SIMPLE_RADIAL (f, k1; steadier on few photos); default %(default)s")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder")
    p.add_argument("--quiet", action="store_true", help="no progress output, only the final summary")
    p.set_defaults(func=cmd_process)


def _check_paths(inp: Path, out: Path, overwrite: bool) -> None:
    if not inp.exists():
        raise OmnifieldError(f"{inp}: input not found (give a folder of photos or a video file)")
    if out.exists() and not out.is_dir():
        raise OmnifieldError(f"{out}: --out exists and is a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OmnifieldError(f"{out}: --out exists and is not empty (pass --overwrite to replace it)")
    inp_r, out_r = inp.resolve(), out.resolve()
    if inp.is_dir() and (out_r == inp_r or inp_r in out_r.parents):
        raise OmnifieldError(f"{out}: --out must not be inside the input folder {inp}")
    if out_r in inp_r.parents:
        raise OmnifieldError(f"{out}: --out must not contain the input {inp}")


class _Stages:
    """Times named stages and prints a status line per stage unless quiet."""

    def __init__(self, quiet: bool):
        self.quiet, self.seconds = quiet, {}

    @contextmanager
    def __call__(self, name: str, detail: str = ""):
        if not self.quiet:
            print(f"{name}{': ' + detail if detail else ''} ...", flush=True)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 2)
        if not self.quiet:
            print(f"{name}: done in {self.seconds[name]:.1f} s", flush=True)

    def bar(self, total: int, unit: str):
        from tqdm import tqdm

        return tqdm(total=total, unit=unit, disable=self.quiet, leave=False, file=sys.stdout)


def _too_few(n_reg: int, n_total: int, matcher: str, options) -> str | None:
    if n_reg >= 3 and n_reg >= math.ceil(n_total / 2):
        return None
    hints = ["photos with more overlap between neighbours and more texture"]
    if matcher == "sequential":
        hints.insert(0, "--matcher exhaustive")
    if options.camera_model == "OPENCV":
        hints.insert(0, "--camera-model SIMPLE_RADIAL")
    hints.insert(0, f"a larger --max-image-size (now {options.max_image_size})")
    return f"only {n_reg} of {n_total} images registered; try " + ", ".join(hints)


def process(inp: Path, out: Path, options, num_frames: int = 100, overwrite: bool = False,
            quiet: bool = False) -> dict:
    """Build the scene folder ``out`` from photos or a video ``inp``; returns the report (also in ``out``)."""
    from omnifield.apps.process import inputs, scene_folder, sfm, video

    _check_paths(inp, out, overwrite)
    if num_frames < 3:
        raise OmnifieldError(f"--num-frames must be at least 3, got {num_frames}")
    if options.max_image_size < 100:
        raise OmnifieldError(f"--max-image-size must be at least 100 pixels, got {options.max_image_size}")
    silence_colmap_logging()
    stages = _Stages(quiet)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.processing-", dir=out.parent))
    try:
        work, scene = tmp / "work", tmp / "scene"
        work.mkdir()
        is_video = inp.is_file()
        if is_video:
            image_dir = work / "frames"
            with stages("frames", f"picking {num_frames} sharp frames of {inp.name}"), stages.bar(None, "frame") as bar:
                names = video.extract_frames(inp, image_dir, num_frames, bar)
        else:
            image_dir, names = inp, inputs.list_images(inp)
        with stages("check", f"{len(names)} images"):
            width, height = inputs.check_images(image_dir, names)
        matcher = sfm.resolve_matcher(options.matcher, len(names), is_video)
        database = work / "database.db"
        with stages("features", f"SIFT on {width}x{height} images, at most {options.max_image_size} px"):
            sfm.extract(database, image_dir, names, options)
        guided = sfm.resolve_guided(options.guided, sfm.match_pairs(matcher, len(names), options))
        with stages("matching", f"{matcher}{', guided' if guided else ''}"):
            sfm.match(database, matcher, options, guided)
        with stages("mapping", "incremental"), stages.bar(len(names), "image") as bar:
            model = sfm.map_images(database, image_dir, work / "models", on_image=lambda: bar.update(1))
        n_reg = model.num_reg_images()
        message = _too_few(n_reg, len(names), matcher, options)
        if message:
            raise OmnifieldError(f"{inp}: {message}")
        report = {
            "input": str(inp), "images_total": len(names), "images_registered": n_reg,
            "unregistered": sorted(set(names) - {im.name for im in model.images.values()}),
            "mean_reprojection_error_px": round(float(model.compute_mean_reprojection_error()), 4),
            "points3D": model.num_points3D(), "matcher": matcher, "guided_matching": guided,
            "camera_model": options.camera_model,
            "camera_params": next(iter(model.cameras.values())).params.tolist(),
            "max_image_size": options.max_image_size,
        }
        with stages("undistortion", "to PINHOLE"):
            (work / "model").mkdir()
            model.write(work / "model")
            undistorted = sfm.undistort(work / "model", image_dir, work / "undistorted")
            scene.mkdir()
            (work / "undistorted" / "images").rename(scene / "images")
            (scene / "sparse" / "0").mkdir(parents=True)
            undistorted.write(scene / "sparse" / "0")
            scene_folder.write_scene_files(scene)
        registered = sorted(im.name for im in undistorted.images.values())
        with stages("downscale", "images_2, images_4, images_8"), stages.bar(len(registered), "image") as bar:
            scene_folder.write_downscaled(scene, registered, progress=bar)
        report["seconds"] = {**stages.seconds, "total": round(sum(stages.seconds.values()), 2)}
        write_text_atomic(scene / REPORT_NAME, json.dumps(report, indent=2))
        if out.exists():
            out.rename(tmp / "replaced")
        scene.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def cmd_process(args: argparse.Namespace) -> int:
    from omnifield.apps.process.sfm import SfmOptions

    options = SfmOptions(camera_model=args.camera_model, max_image_size=args.max_image_size, matcher=args.matcher,
                         guided=args.guided_matching)
    out = Path(args.out)
    report = process(Path(args.input), out, options, args.num_frames, args.overwrite, args.quiet)
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in report["seconds"].items())
    print(f"registered {report['images_registered']}/{report['images_total']} images, "
          f"mean reprojection error {report['mean_reprojection_error_px']:.3f} px, {report['points3D']} 3D points "
          f"({report['matcher']}{' guided' if report['guided_matching'] else ''} matching, {report['camera_model']})")
    print(f"time: {seconds}")
    print(f"wrote {out} (report: {out / REPORT_NAME}); train with: omnifield train {out}")
    return 0
