"""``omnifield export splat RUN_DIR --out scene.ply``: a trained splat run as a standard 3DGS .ply."""

from __future__ import annotations

import argparse
from pathlib import Path

from omnifield.apps.splat.compact import CompactGaussianScene
from omnifield.apps.splat.run import load_splat_run
from omnifield.io.splat_ply import save_splat_ply


def cmd_export_splat(args: argparse.Namespace) -> int:
    """Write the run's Gaussians (Compact-3DGS: masked, quantized, colour baked into SH) to ``--out``."""
    scene = load_splat_run(args.run)
    if isinstance(scene, CompactGaussianScene):
        scene = scene.to_plain_scene()
    out = Path(args.out) if args.out else Path(args.run) / "scene.ply"
    save_splat_ply(scene, out)
    print(f"wrote {len(scene)} Gaussians (SH degree {scene.max_sh_degree}) to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export splat`` (an ``export`` command with a ``splat`` target)."""
    existing = sub.choices.get("export")
    if existing is None:
        existing = sub.add_parser("export", help="export a trained run to a standard file format")
        existing.set_defaults(func=lambda args: existing.print_help() or 2)
    targets = next((a for a in existing._actions if isinstance(a, argparse._SubParsersAction)), None)
    if targets is None:
        targets = existing.add_subparsers(dest="export_target", metavar="TARGET")
    p = targets.add_parser("splat", help="Gaussian splats as a 3DGS .ply (binary, read by splat viewers)",
                           description="Write a splat run's Gaussians as the standard 3DGS .ply.")
    p.add_argument("run", help="run folder written by 'omnifield train --method splat'")
    p.add_argument("--out", help="output .ply (default: RUN/scene.ply)")
    p.set_defaults(func=cmd_export_splat)
