"""Blender loader on the bundled scene, and clear errors for broken input."""

import json
import shutil

import pytest
import torch

from omnifield.data.blender import load_blender
from omnifield.errors import OmnifieldError


def test_bundled_lego(lego_dir):
    train = load_blender(lego_dir, "train")
    test = load_blender(lego_dir, "test")
    assert train.images.shape == (87, 200, 200, 4) and test.images.shape == (13, 200, 200, 4)
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) <= 1.0
    # focal scales with the width: 0.5 * W / tan(0.5 * camera_angle_x)
    meta = json.loads((lego_dir / "transforms_train.json").read_text())
    import math
    assert abs(float(train.cameras.fx[0]) - 100 / math.tan(0.5 * meta["camera_angle_x"])) < 1e-3
    radius = train.cameras.c2w[:, :3, 3].norm(dim=-1)
    assert torch.all((radius > 3.5) & (radius < 4.5))


def _small_scene(tmp_path, lego_dir, frames=2):
    meta = json.loads((lego_dir / "transforms_test.json").read_text())
    meta["frames"] = meta["frames"][:frames]
    (tmp_path / "test").mkdir()
    for f in meta["frames"]:
        shutil.copy(lego_dir / (f["file_path"] + ".png"), tmp_path / (f["file_path"] + ".png"))
    return meta


def _write(tmp_path, meta):
    (tmp_path / "transforms_test.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda m, p: (p / "transforms_test.json").write_text("{not json"), "malformed JSON"),
        (lambda m, p: _write(p, {**m, "frames": []}), "no usable images"),
        (lambda m, p: _write(p, {k: v for k, v in m.items() if k != "frames"}), "missing the 'frames' list"),
        (lambda m, p: _write(p, {**m, "camera_angle_x": "wide"}), "camera_angle_x"),
        (lambda m, p: (p / (m["frames"][0]["file_path"] + ".png")).unlink(), "not found"),
        (lambda m, p: (p / (m["frames"][0]["file_path"] + ".png")).write_bytes(b"\x89PNG\r\n\x1a\ngarbage"),
         "cannot read image"),
        (lambda m, p: _write(p, {**m, "frames": [{**m["frames"][0], "transform_matrix": [[1, 2], [3, 4]]}]}),
         "must be 4x4"),
        (lambda m, p: _write(p, {**m, "frames": [{**m["frames"][0], "transform_matrix": [[float("nan")] * 4] * 4}]}),
         "NaN"),
        (lambda m, p: _write(p, {**m, "frames": [{**m["frames"][0],
                                                    "transform_matrix": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]}),
         "not orthonormal"),
        (lambda m, p: _write(p, {**m, "frames": [{"file_path": "x"}]}), "needs 'file_path' and 'transform_matrix'"),
    ],
)
def test_broken_scenes_give_clear_errors(tmp_path, lego_dir, breakage, message):
    meta = _small_scene(tmp_path, lego_dir)
    _write(tmp_path, meta)
    breakage(meta, tmp_path)
    with pytest.raises(OmnifieldError, match=message):
        load_blender(tmp_path, "test")


def test_missing_folder_and_split(tmp_path):
    with pytest.raises(OmnifieldError, match="data folder not found"):
        load_blender(tmp_path / "nope", "train")
    with pytest.raises(OmnifieldError, match="transforms_train.json: file not found"):
        load_blender(tmp_path, "train")
