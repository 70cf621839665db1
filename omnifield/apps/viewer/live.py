"""``omnifield train --viewer``: the browser viewer on the scene being trained (see :mod:`.server`)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from omnifield.apps.viewer.server import RenderFn, SceneViewer
from omnifield.engine import Engine
from omnifield.errors import OmnifieldError


def check_viewer_options(port: int, max_width: int) -> None:
    """Refuse a port outside 0..65535, a frame narrower than 16 pixels, or a missing viser, in one line."""
    if not 0 <= port <= 65535:
        raise OmnifieldError(f"--port must be in 0..65535, got {port}")
    if max_width < 16:
        raise OmnifieldError(f"--viewer-width must be >= 16 pixels, got {max_width}")
    try:
        import viser  # noqa: F401
    except ImportError:
        raise OmnifieldError("the viewer needs viser: pip install 'omnifield[viewer]'") from None


def open_viewer(render: RenderFn, host: str, port: int, max_width: int, live: bool = False) -> SceneViewer:
    """A started :class:`SceneViewer`, or one line saying why not (viser missing, port taken, bad options)."""
    check_viewer_options(port, max_width)
    try:
        return SceneViewer(render, host, port, max_width, live=live)
    except OSError as exc:
        raise OmnifieldError(f"--port {port}: cannot listen ({exc.strerror})") from None


@contextmanager
def watch_training(render: RenderFn, engine: Engine, host: str = "127.0.0.1", port: int = 8080,
                   max_width: int = 256) -> Iterator[SceneViewer]:
    """Serve ``render`` while ``engine`` trains: frames are rendered between steps (off the training
    clock, at most 10 % of the wall time); on exit the viewer stops and says what it cost."""
    viewer = open_viewer(render, host, port, max_width, live=True)
    engine.between_steps.append(viewer.between_steps)
    print(f"viewer at http://{host}:{viewer.port} (frames between training steps, at most "
          f"{100 * viewer.max_fraction:.0f}% of the wall time)", flush=True)
    start = time.monotonic()
    try:
        yield viewer
    finally:
        engine.between_steps.remove(viewer.between_steps)
        viewer.stop()
        wall = max(time.monotonic() - start, 1e-9)
        print(f"viewer: {viewer.frames_sent} frames, {viewer.render_seconds:.1f} s of rendering "
              f"({100 * viewer.render_seconds / wall:.1f}% of {wall:.0f} s)", flush=True)
