"""The viser server: each connected browser gets frames of the field rendered from its camera.

A render thread per client renders at growing resolution (coarse first, so moving stays fluid) and
starts again from the coarsest level as soon as the browser camera moves.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from omnifield.apps.viewer.browser_camera import browser_camera, progressive_sizes
from omnifield.data.images import to_uint8

WHITE = torch.ones(3)


class FieldViewer:
    """Serves a run's field (``run.field``, ``run.renderer``) to browsers on ``host:port``."""

    def __init__(self, run, host: str = "127.0.0.1", port: int = 8080, max_width: int = 512):
        import viser

        self.run, self.max_width = run, max_width
        self.frames_sent = 0
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.server.scene.set_up_direction("+z")
        self._stop = threading.Event()
        self.server.on_client_connect(self._on_connect)

    @property
    def port(self) -> int:
        return self.server.get_port()

    def _on_connect(self, client) -> None:
        moved = threading.Event()
        client.camera.position = (0.0, -3.0, 1.5)
        client.camera.look_at = (0.0, 0.0, 0.0)
        client.camera.on_update(lambda _: moved.set())
        moved.set()
        threading.Thread(target=self._render_loop, args=(client, moved), daemon=True).start()

    def _render_loop(self, client, moved: threading.Event) -> None:
        while not self._stop.is_set():
            if not moved.wait(timeout=0.2):
                continue
            moved.clear()
            try:
                sizes = progressive_sizes(client.camera.aspect, self.max_width)
                for width, height in sizes:
                    if moved.is_set() or self._stop.is_set():
                        break
                    cam = client.camera
                    image = self.render(cam.wxyz, cam.position, cam.fov, width, height)
                    client.scene.set_background_image(image, format="jpeg")
                    self.frames_sent += 1
            except (AssertionError, KeyError, RuntimeError):  # client disconnected or camera not yet known
                if client.client_id not in self.server.get_clients():
                    return

    @torch.no_grad()
    def render(self, wxyz, position, fov_y: float, width: int, height: int) -> np.ndarray:
        """uint8 ``[H, W, 3]`` image of the field on white from a browser camera pose."""
        cameras = browser_camera(np.asarray(wxyz), np.asarray(position), fov_y, width, height)
        return to_uint8(self.run.renderer.render_image(self.run.field, cameras, 0, WHITE)["rgb"])

    def stop(self) -> None:
        self._stop.set()
        self.server.stop()
