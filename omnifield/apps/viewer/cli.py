"""``omnifield view RUN_DIR``: look at a trained field or splat run in the browser (viser)."""

from __future__ import annotations

import argparse
import time

from omnifield.apps.viewer.live import open_viewer
from omnifield.apps.viewer.server import field_render, splat_render
from omnifield.cli_options import add_new_and_old


def run_render(run):
    """The viewer's render function of an opened run (:func:`~omnifield.apps.recon.open_run.open_run`)."""
    return splat_render(run.field) if run.kind == "splat" else field_render(run)


def cmd_view(args: argparse.Namespace) -> int:
    from omnifield.apps.recon.open_run import open_run

    run = open_run(args.run)
    viewer = open_viewer(run_render(run), args.host, args.port, args.viewer_width)
    print(f"viewing {args.run} at http://{args.host}:{viewer.port} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(1.0)
    finally:
        viewer.stop()


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``view``."""
    p = sub.add_parser("view", help="interactive browser viewer of a trained run (viser)",
                       description="Serve a run to the browser; frames refine from coarse to --viewer-width.")
    p.add_argument("run", help="run folder written by 'omnifield train' (a field or a splat run), or a Compact-3DGS "
                              ".ofz file")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    add_new_and_old(p, "--viewer-width", ("--max-width",), dest="viewer_width", type=int, default=512,
                    help="width of the finest frame in pixels (default 512; the same option as train --viewer's)")
    p.set_defaults(func=cmd_view)
