"""``omnifield view``: the viser viewer opened in headless Chromium shows a rendered, non-blank frame."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from omnifield.apps.recon.config import TrainConfig
from omnifield.apps.recon.run import Run
from omnifield.apps.viewer.browser_camera import browser_camera, progressive_sizes
from omnifield.cli import build_parser
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.radiance import RadianceFieldConfig
from omnifield.renderers.volume import VolumeRendererConfig

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path("outputs/test-artifacts")


def test_browser_camera_follows_opencv_pose_and_progressive_sizes_double():
    # camera at z=3 rotated 180 degrees about x: OpenCV +z (forward) becomes world -z
    cams = browser_camera(np.array([0.0, 1.0, 0.0, 0.0]), np.array([0.0, 0.0, 3.0]), fov_y=0.8, width=40, height=30)
    origins, dirs = cams.generate_rays(torch.zeros(1, dtype=torch.long), torch.tensor([20.0]), torch.tensor([15.0]))
    torch.testing.assert_close(dirs[0], torch.tensor([0.0, 0.0, -1.0]))
    torch.testing.assert_close(origins[0], torch.tensor([0.0, 0.0, 3.0]))
    assert cams.fy[0].item() == pytest.approx(15 / np.tan(0.4))
    # image top row (OpenCV -y) is world +y when looking down -z with this pose
    _, top = cams.generate_rays(torch.zeros(1, dtype=torch.long), torch.tensor([20.0]), torch.tensor([0.0]))
    assert top[0, 1] > 0
    assert progressive_sizes(2.0, 512) == [(64, 32), (128, 64), (256, 128), (512, 256)]
    assert build_parser().parse_args(["view", "RUN", "--port", "0"]).port == 0


def _tiny_run(path: Path) -> Run:
    torch.manual_seed(0)
    enc = HashGridConfig(n_levels=2, n_features_per_level=2, base_resolution=8, max_resolution=24, init_scale=1.0)
    cfg = RadianceFieldConfig(encoding=enc, density_decoder=MLPConfig(width=16, n_hidden_layers=1),
                              color_decoder=MLPConfig(width=16, n_hidden_layers=1), sh_degree=1,
                              aabb=(-1.0, -1.0, -1.0, 1.0, 1.0, 1.0))
    run = Run.create(path, "hashgrid", cfg, VolumeRendererConfig(sampler="uniform", n_samples=16),
                     TrainConfig(steps=1), "")
    run.field.eval()
    return run


def _chromium_screenshot(url: str, out: Path, ready, profile: Path, timeout: float = 60.0) -> None:
    """Open ``url`` in headless Chromium, wait for ``ready()`` and save a PNG screenshot (DevTools protocol)."""
    from websockets.sync.client import connect

    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
                             f"--user-data-dir={profile}", "--window-size=800,600", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        port_file = profile / "DevToolsActivePort"
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert time.time() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        page = next(t for t in json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json")) if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            def call(i, method, **params):
                ws.send(json.dumps({"id": i, "method": method, "params": params}))
                while (msg := json.loads(ws.recv(timeout=timeout))).get("id") != i:
                    pass
                return msg.get("result", {})

            call(1, "Page.navigate", url=url)
            while not ready():
                assert time.time() < deadline, "no frame was rendered for the browser"
                time.sleep(0.2)
            time.sleep(1.5)  # let the browser draw the last frame
            out.write_bytes(base64.b64decode(call(2, "Page.captureScreenshot", format="png")["data"]))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_viewer_frame_reaches_headless_chromium(tmp_path):
    pytest.importorskip("viser", reason="viser is not installed (pip install 'omnifield[viewer]')")
    from omnifield.apps.viewer.server import SceneViewer, field_render

    viewer = SceneViewer(field_render(_tiny_run(tmp_path / "run")), port=0, max_width=128)
    try:
        out = tmp_path / "viewer.png"
        _chromium_screenshot(f"http://127.0.0.1:{viewer.port}/", out, lambda: viewer.frames_sent >= 4,
                             tmp_path / "profile")
    finally:
        viewer.stop()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(out, ARTIFACTS / "viewer_frame.png")
    shot = iio.imread(out)[..., :3].astype(np.float32)
    centre = shot[shot.shape[0] // 3: -40, 200:450]  # the field's frame, clear of the viser panels
    assert centre.std() > 10, "the browser shows a blank frame"
    assert centre.mean() < 250, "the frame is all white: nothing of the field was drawn"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_live_viewer_shows_the_field_while_it_trains(tmp_path):
    """``train --viewer``: frames are rendered between training steps (in the training thread, off the
    training clock) and reach the browser while the field trains; the viewer's time stays bounded."""
    pytest.importorskip("viser", reason="viser is not installed (pip install 'omnifield[viewer]')")
    import threading

    from omnifield.apps.recon.trainer import Trainer
    from omnifield.apps.viewer.live import watch_training
    from omnifield.apps.viewer.server import field_render
    from omnifield.data.blender import load_blender

    data = load_blender(Path(__file__).resolve().parents[1] / "data" / "lego_200", "train", downscale=8)
    run = _tiny_run(tmp_path / "run")
    run.train_config = TrainConfig(steps=10**6, batch_rays=256, target_samples=0, checkpoint_every_s=1e9)
    trainer = Trainer(run, data, progress=False)
    shot_taken, failure = threading.Event(), []

    def stop_when_seen():
        if shot_taken.is_set():
            raise KeyboardInterrupt  # the engine checkpoints and stops, as on Ctrl-C

    trainer.engine.between_steps.append(stop_when_seen)
    with watch_training(field_render(run), trainer.engine, port=0, max_width=128) as viewer:
        def browse():
            try:
                _chromium_screenshot(f"http://127.0.0.1:{viewer.port}/", tmp_path / "live.png",
                                     lambda: viewer.frames_sent >= 4, tmp_path / "profile")
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                failure.append(exc)
            finally:
                shot_taken.set()

        browser = threading.Thread(target=browse, daemon=True)
        browser.start()
        with pytest.raises(KeyboardInterrupt):
            trainer.fit()
        browser.join(timeout=30)
    assert not failure, failure
    assert trainer.step > 0 and viewer.frames_sent >= 4
    # the viewer renders in the training thread and stays within its share of the wall time (10 % plus the
    # one frame that may run over)
    assert viewer.render_seconds < 0.1 * (trainer.elapsed + viewer.render_seconds) + 2.0
    shot = iio.imread(tmp_path / "live.png")[..., :3].astype(np.float32)
    centre = shot[shot.shape[0] // 3: -40, 200:450]
    assert centre.std() > 10, "the browser shows a blank frame"
