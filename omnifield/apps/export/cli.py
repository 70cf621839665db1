"""``omnifield export mesh|points|video RUN_DIR``: a trained field as files other tools open.

``export`` is one parser whose targets are contributed by several modules (``export splat`` lives with
the splatting app): each calls :func:`export_targets` to get or create the shared target list.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omnifield.errors import OmnifieldError


def export_targets(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-parsers of the shared ``export`` command, created on first use."""
    parser = sub.choices.get("export")
    if parser is None:
        parser = sub.add_parser("export", help="export a trained run to a standard file format")
        parser.set_defaults(func=lambda args: parser.print_help() or 2)
    targets = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    return targets if targets is not None else parser.add_subparsers(dest="export_target", metavar="TARGET")


def _open(run_dir: str):
    """The run and the world/box normalisation of its capture (identity when the data folder is gone)."""
    from omnifield.apps.recon.run import Run
    from omnifield.data.scene import Normalization, scene_normalization

    run, _, _ = Run.open(run_dir)
    run.field.eval()
    if not Path(run.data_dir).is_dir():
        print(f"note: data folder {run.data_dir!r} not found; exporting in the field's box coordinates")
        return run, Normalization()
    return run, scene_normalization(run.data_dir)


def _color(run):
    return lambda x, d: run.field(x, d)[0]


def cmd_mesh(args: argparse.Namespace) -> int:
    from omnifield.io.mesh import extract_mesh, save_mesh

    if not 0 <= args.min_component <= 1:
        raise OmnifieldError(f"--min-component must be a fraction in [0, 1], got {args.min_component}")
    run, norm = _open(args.run)
    out = Path(args.out) if args.out else Path(args.run) / "mesh.ply"
    mesh = extract_mesh(run.field.density, run.field.aabb.cpu(), args.resolution, args.threshold, _color(run),
                        args.min_component)
    mesh.vertices = norm.to_world(mesh.vertices)
    save_mesh(mesh, out)
    print(f"wrote {len(mesh.vertices)} vertices, {len(mesh.faces)} faces to {out}")
    return 0


def cmd_points(args: argparse.Namespace) -> int:
    from omnifield.io.points import sample_dense_points, save_points_ply

    run, norm = _open(args.run)
    out = Path(args.out) if args.out else Path(args.run) / "points.ply"
    xyz, rgb = sample_dense_points(run.field.density, run.field.aabb.cpu(), args.n_points, args.threshold,
                                   _color(run), args.resolution)
    save_points_ply(out, norm.to_world(xyz.numpy()), rgb.numpy())
    print(f"wrote {len(xyz)} points to {out}")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from omnifield.apps.export.camera_path import orbit_path, path_file_cameras
    from omnifield.apps.recon.evaluate import render_cameras
    from omnifield.io.video import write_video

    run, norm = _open(args.run)
    out = Path(args.out) if args.out else Path(args.run) / "video.mp4"
    if args.path == "orbit":
        cameras = orbit_path(run.data_dir, run.downscale, args.frames)
    elif Path(args.path).is_file():
        cameras = path_file_cameras(args.path, norm)
    else:
        raise OmnifieldError(f"--path {args.path!r}: neither 'orbit' nor an existing camera path file")
    written = write_video(out, render_cameras(run, cameras, progress=not args.quiet), fps=args.fps)
    print(f"wrote {len(cameras)} frames to {written}")
    return 0


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value"
    return parse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export mesh``, ``export points`` and ``export video``."""
    targets = export_targets(sub)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("run", help="run folder written by 'omnifield train'")
    common.add_argument("--out", help="output file (default: inside RUN)")
    dense = argparse.ArgumentParser(add_help=False)
    dense.add_argument("--threshold", type=float, default=10.0, help="density iso-level (default 10)")
    dense.add_argument("--resolution", type=_positive(int), default=128, help="grid cells per axis (default 128)")

    p = targets.add_parser("mesh", parents=[common, dense], help="marching-cubes mesh (.ply/.obj/.glb, vertex colours)")
    p.add_argument("--min-component", type=float, default=0.05,
                   help="drop components smaller than this fraction of the largest (floaters; default 0.05)")
    p.set_defaults(func=cmd_mesh)
    p = targets.add_parser("points", parents=[common, dense], help="coloured point cloud (.ply) where density is high")
    p.add_argument("--n-points", type=_positive(int), default=200_000, help="number of points (default 200000)")
    p.set_defaults(func=cmd_points)
    p = targets.add_parser("video", parents=[common], help="video along an orbit or a camera path file")
    p.add_argument("--path", default="orbit", help="'orbit' or a JSON camera path (transforms.json layout)")
    p.add_argument("--frames", type=_positive(int), default=60, help="orbit frames (default 60)")
    p.add_argument("--fps", type=_positive(int), default=24)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_video)
