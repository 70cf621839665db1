"""``omnifield view RUN_DIR``: look at a trained field in the browser (viser)."""

from __future__ import annotations

import argparse
import time

from omnifield.apps.viewer.live import open_viewer
from omnifield.apps.viewer.server import field_render


def cmd_view(args: argparse.Namespace) -> int:
    from omnifield.apps.recon.run import Run

    run, _, _ = Run.open(args.run)
    run.field.eval()
    viewer = open_viewer(field_render(run), args.host, args.port, args.max_width)
    print(f"viewing {args.run} at http://{args.host}:{viewer.port} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(1.0)
    finally:
        viewer.stop()


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``view``."""
    p = sub.add_parser("view", help="interactive browser viewer of a trained run (viser)",
                       description="Serve a run to the browser; frames refine from coarse to --max-width.")
    p.add_argument("run", help="run folder written by 'omnifield train'")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--max-width", type=int, default=512, help="width of the finest frame in pixels (default 512)")
    p.set_defaults(func=cmd_view)
