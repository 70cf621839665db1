"""``omnifield export mesh|points|video RUN_DIR``: a trained field or splat run as files other tools open.

Splat runs export like fields: meshes are the iso-surface of the Gaussians' density (threshold from density
samples over their box), videos are rasterized; their point cloud is the Gaussians' means with their colours.

``export`` is one parser whose targets are contributed by several modules (``export splat`` lives with
the splatting app): each calls :func:`export_targets` to get or create the shared target list.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omnifield.errors import OmnifieldError

DEFAULT_FPS = 24


def export_targets(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-parsers of the shared ``export`` command, created on first use."""
    parser = sub.choices.get("export")
    if parser is None:
        parser = sub.add_parser("export", help="export a trained run to a standard file format")
        parser.set_defaults(func=lambda args: parser.print_help() or 2)
    targets = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    return targets if targets is not None else parser.add_subparsers(dest="export_target", metavar="TARGET")


def _open(run_dir: str):
    """The run (field or splat, :func:`~omnifield.apps.recon.open_run.open_run`) and the world/box normalisation
    of its capture (identity when the data folder is gone)."""
    from omnifield.apps.recon.open_run import open_run

    run = open_run(run_dir)
    return run, run.normalization()


def _output(args: argparse.Namespace, default: str, formats: tuple[str, ...]) -> Path:
    """The output file (``--out`` or ``default`` inside the run, or beside a ``.ofz`` file), refused before any
    work when its suffix is not one of ``formats``."""
    out = Path(args.out) if args.out else _run_folder(args.run) / default
    if out.suffix.lower() not in formats:
        raise OmnifieldError(f"{out}: unsupported {default.split('.')[0]} format (use {', '.join(formats)})")
    return out


def _run_folder(run: str) -> Path:
    """The folder of a run argument (a run folder, or the folder of a ``.ofz`` file)."""
    return Path(run).parent if Path(run).suffix == ".ofz" else Path(run)


def _color(run):
    return lambda x, d: run.field(x, d)[0]


def _threshold(run, given: float | None):
    """The density threshold of a mesh or point export (``renderers/density_threshold.py``), reported on stdout."""
    from omnifield.renderers.density_threshold import choose_threshold, measured_densities

    threshold = choose_threshold(measured_densities(run), given)
    print(threshold.describe())
    return threshold.value


def cmd_mesh(args: argparse.Namespace) -> int:
    from omnifield.io.mesh import MESH_FORMATS, extract_mesh, save_mesh
    from omnifield.io.progress import counting_progress
    from omnifield.renderers.density_threshold import run_density

    if not 0 <= args.min_component <= 1:
        raise OmnifieldError(f"--min-component must be a fraction in [0, 1], got {args.min_component}")
    if args.method == "poisson":
        from omnifield.apps.export.poisson import require_open3d

        require_open3d()
    out = _output(args, "mesh.ply", MESH_FORMATS)
    run, norm = _open(args.run)
    threshold = _threshold(run, args.threshold)
    aabb = run.field.aabb.cpu()
    if args.method == "poisson":
        from omnifield.apps.export.poisson import poisson_mesh

        mesh = poisson_mesh(run_density(run), aabb, threshold, _color(run), args.n_points, args.resolution,
                            args.depth, args.min_component, quiet=args.quiet)
    else:
        with counting_progress(run_density(run), args.resolution**3, "density grid", args.quiet) as density:
            mesh = extract_mesh(density, aabb, args.resolution, threshold, _color(run), args.min_component)
    mesh.vertices = norm.to_world(mesh.vertices)
    save_mesh(mesh, out)
    print(f"wrote {len(mesh.vertices)} vertices, {len(mesh.faces)} faces to {out}")
    return 0


def cmd_points(args: argparse.Namespace) -> int:
    from omnifield.io.points import sample_dense_points, save_points_ply
    from omnifield.io.progress import counting_progress
    from omnifield.renderers.density_threshold import run_density

    out = _output(args, "points.ply", (".ply",))
    run, norm = _open(args.run)
    if run.kind == "splat":  # the Gaussians are the points
        xyz, rgb = run.field.means.detach().cpu(), run.field.base_colors().detach().cpu()
        save_points_ply(out, norm.to_world(xyz.numpy()), rgb.numpy())
        print(f"wrote the {len(xyz)} Gaussians' means and colours to {out}")
        return 0
    threshold = _threshold(run, args.threshold)
    total = args.resolution**3 + 2 * args.n_points  # voxel centres, then the jittered candidates
    with counting_progress(run_density(run), total, "sampling points", args.quiet) as density:
        xyz, rgb = sample_dense_points(density, run.field.aabb.cpu(), args.n_points, threshold, _color(run),
                                       args.resolution)
    save_points_ply(out, norm.to_world(xyz.numpy()), rgb.numpy())
    print(f"wrote {len(xyz)} points to {out}")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from omnifield.apps.recon.evaluate import render_cameras
    from omnifield.data.camera_path import CameraPath, orbit_path, read_camera_path
    from omnifield.io.video import write_video

    run, norm = _open(args.run)
    out = Path(args.out) if args.out else _run_folder(args.run) / "video.mp4"
    if args.path == "orbit":
        if not run.data_dir:
            raise OmnifieldError(f"{args.run}: the run names no scene folder to orbit; pass --path FILE")
        path = CameraPath(orbit_path(run.data_dir, run.downscale, args.frames))
    elif Path(args.path).is_file():
        path = read_camera_path(args.path, norm)
    else:
        raise OmnifieldError(f"--path {args.path!r}: neither 'orbit' nor an existing camera path file")
    fps = args.fps or path.fps or DEFAULT_FPS
    written = write_video(out, render_cameras(run, path.cameras, progress=not args.quiet), fps=fps)
    print(f"wrote {len(path.cameras)} frames at {fps} fps to {written}")
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
    common.add_argument("run", help="run folder written by 'omnifield train' (a field or a splat run), or a "
                                    "Compact-3DGS .ofz file")
    common.add_argument("--out", help="output file (default: mesh.ply, points.ply or video.mp4 inside RUN)")
    common.add_argument("--quiet", action="store_true", help="no progress bar")
    dense = argparse.ArgumentParser(add_help=False)
    dense.add_argument("--threshold", type=float, default=None,
                       help="density iso-level in box units (default: chosen from the run's occupancy grid, the "
                            "Otsu split of its log density between empty space and surfaces; printed)")
    dense.add_argument("--resolution", type=_positive(int), default=128,
                       help="grid cells per axis over the field's box (default 128)")

    p = targets.add_parser("mesh", parents=[common, dense], help="mesh of the density iso-surface (.ply/.obj/.glb, "
                                                                 "vertex colours)")
    p.add_argument("--method", choices=["marching-cubes", "poisson"], default="marching-cubes",
                   help="marching cubes on the density grid, or screened Poisson reconstruction from dense points "
                        "with density-gradient normals (needs open3d: pip install 'omnifield[mesh]') "
                        "(default marching-cubes)")
    p.add_argument("--min-component", type=float, default=0.05,
                   help="drop components smaller than this fraction of the largest (floaters; default 0.05)")
    p.add_argument("--n-points", type=_positive(int), default=200_000,
                   help="poisson: points sampled where the density is above the threshold (default 200000)")
    p.add_argument("--depth", type=_positive(int), default=9,
                   help="poisson: octree depth, the mesh resolves 2^depth cells per axis (default 9)")
    p.set_defaults(func=cmd_mesh)
    p = targets.add_parser("points", parents=[common, dense], help="coloured point cloud (.ply) where density is "
                                                                   "above the threshold (splat runs: the Gaussians)")
    p.add_argument("--n-points", type=_positive(int), default=200_000,
                   help="number of points (default 200000); a splat run writes one point per Gaussian, its mean "
                        "and colour, and ignores --n-points, --threshold and --resolution")
    p.set_defaults(func=cmd_points)
    p = targets.add_parser("video", parents=[common], help="video along an orbit or a camera path file")
    p.add_argument("--path", default="orbit",
                   help="'orbit' around the capture, or a JSON camera path in the data's world coordinates: "
                        "nerfstudio's camera_path.json or the transforms.json layout (default orbit)")
    p.add_argument("--frames", type=_positive(int), default=60, help="number of orbit frames (default 60)")
    p.add_argument("--fps", type=_positive(int), default=None,
                   help=f"frames per second (default: the camera path's fps, else {DEFAULT_FPS})")
    p.set_defaults(func=cmd_video)
