"""The viser server: each connected browser gets frames of a scene rendered from its camera.

Frames come at growing resolution (coarse first, so moving stays fluid) and start again from the
coarsest level as soon as the browser camera moves. Two ways to drive it, one mechanism:

- ``omnifield view``: a render thread per client renders whenever its camera moved;
- ``omnifield train --viewer`` (``live=True``): the training loop calls :meth:`SceneViewer.between_steps`
  after each step, in the training thread (the field is never read while an optimiser writes it). It
  renders at most one frame per call and only while the viewer's share of the wall time stays under
  ``max_fraction`` (10 % by default: after a frame of ``r`` seconds the next waits ``r / max_fraction``).
  A client whose frame is complete gets a fresh one every ``refresh_s`` seconds, as training changes the scene.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np
import torch

from omnifield.apps.viewer.browser_camera import browser_camera, progressive_sizes
from omnifield.data.images import to_uint8
from omnifield.fields.gaussians import GaussianScene
from omnifield.renderers.cameras import Cameras
from omnifield.renderers.splat import SplatRenderer

RenderFn = Callable[[Cameras], torch.Tensor]  # one camera -> rgb [H, W, 3] in [0, 1]


class _ClientView:
    """One browser: the next progressive level to render and when its last complete frame was sent."""

    def __init__(self, client):
        self.client = client
        self.level = 0
        self.completed_at = 0.0
        self.moved = threading.Event()

    def restart(self) -> None:
        self.level = 0
        self.moved.set()


class SceneViewer:
    """Serves ``render(cameras)`` to browsers on ``host:port`` (see the module docstring for the two modes)."""

    def __init__(self, render: RenderFn, host: str = "127.0.0.1", port: int = 8080, max_width: int = 512,
                 live: bool = False, max_fraction: float = 0.1, refresh_s: float = 2.0):
        import viser

        self._render, self.max_width, self.live = render, max_width, live
        self.max_fraction, self.refresh_s = max_fraction, refresh_s
        self.frames_sent = 0
        self.render_seconds = 0.0  # time spent rendering frames (live mode: taken from training)
        self._next_allowed = 0.0
        self._views: dict[int, _ClientView] = {}
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.server.scene.set_up_direction("+z")
        self._stop = threading.Event()
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(lambda client: self._views.pop(client.client_id, None))

    @property
    def port(self) -> int:
        return self.server.get_port()

    def _on_connect(self, client) -> None:
        view = _ClientView(client)
        client.camera.position = (0.0, -3.0, 1.5)
        client.camera.look_at = (0.0, 0.0, 0.0)
        client.camera.on_update(lambda _: view.restart())
        self._views[client.client_id] = view
        view.restart()
        if not self.live:
            threading.Thread(target=self._render_loop, args=(view,), daemon=True).start()

    def _render_next(self, view: _ClientView) -> bool:
        """Render and send the next level of ``view``; False when its frame is complete (or it left)."""
        try:
            sizes = progressive_sizes(view.client.camera.aspect, self.max_width)
            if view.level >= len(sizes):
                return False
            width, height = sizes[view.level]
            cam = view.client.camera
            start = time.perf_counter()
            image = self.render(cam.wxyz, cam.position, cam.fov, width, height)
            view.client.scene.set_background_image(image, format="jpeg")
            self.render_seconds += time.perf_counter() - start
        except (AssertionError, KeyError, RuntimeError):  # client disconnected or camera not yet known
            return False
        view.level += 1
        self.frames_sent += 1
        if view.level == len(sizes):
            view.completed_at = time.monotonic()
        return True

    def _render_loop(self, view: _ClientView) -> None:
        while not self._stop.is_set() and view.client.client_id in self._views:
            if not view.moved.wait(timeout=0.2):
                continue
            view.moved.clear()
            while not (self._stop.is_set() or view.moved.is_set()) and self._render_next(view):
                pass

    def between_steps(self) -> None:
        """Live mode: render at most one frame now, within the wall-time share ``max_fraction``."""
        now = time.monotonic()
        if now < self._next_allowed:
            return
        for view in list(self._views.values()):
            if view.level > 0 and view.completed_at and now - view.completed_at > self.refresh_s:
                view.level, view.completed_at = 0, 0.0  # the scene changed since: a fresh frame
            before = self.render_seconds
            if self._render_next(view):
                self._next_allowed = time.monotonic() + (self.render_seconds - before) / self.max_fraction
                return

    @torch.no_grad()
    def render(self, wxyz, position, fov_y: float, width: int, height: int) -> np.ndarray:
        """uint8 ``[H, W, 3]`` image from a browser camera pose."""
        cameras = browser_camera(np.asarray(wxyz), np.asarray(position), fov_y, width, height)
        return to_uint8(self._render(cameras))

    def stop(self) -> None:
        self._stop.set()
        self.server.stop()


def _in_eval_mode(module: torch.nn.Module, render: RenderFn) -> RenderFn:
    """``render`` with ``module`` in evaluation mode while it runs (its mode restored afterwards)."""

    def wrapped(cameras: Cameras) -> torch.Tensor:
        training = module.training
        module.eval()
        try:
            return render(cameras)
        finally:
            module.train(training)

    return wrapped


def field_render(run) -> RenderFn:
    """A radiance-field run's renderer on white, in evaluation mode (restored afterwards)."""
    white = torch.ones(3)
    return _in_eval_mode(run.field, lambda cameras: run.renderer.render_image(run.field, cameras, 0, white)["rgb"])


def splat_render(scene: GaussianScene) -> RenderFn:
    """Gaussians rasterized on white, in evaluation mode (restored afterwards); the scene may be training
    (density control replaces its tensors between steps, and each frame reads the current ones)."""
    renderer = SplatRenderer(background=(1.0, 1.0, 1.0))
    return _in_eval_mode(scene, lambda cameras: renderer.render_camera(scene, cameras, 0)["rgb"].cpu())
