"""``omnifield process``: poses from raw photos (pycolmap), checked against LLFF's published fern poses."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pycolmap")

from omnifield.apps.process.video import extract_frames, laplacian_variance, pick_sharpest  # noqa: E402
from omnifield.cli import main  # noqa: E402
from omnifield.data.colmap import load_colmap, read_colmap_model  # noqa: E402
from omnifield.data.scene import load_scene  # noqa: E402
from omnifield.data.sparse_depth import SparseDepth  # noqa: E402

FERN = Path(__file__).resolve().parents[1] / "data" / "fern"


def _tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def fern_scene(tmp_path_factory):
    """One SfM run on the 20 fern photos per test session (~10 s on 2 idle cores, ~60 s at load average 15),
    written over a stale folder with --overwrite."""
    if not (FERN / "images").is_dir():
        pytest.skip("data/fern is not present")
    before = _tree_hash(FERN / "images")
    out = tmp_path_factory.mktemp("process") / "fern_scene"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    start = time.perf_counter()
    code = main(["process", str(FERN / "images"), "--out", str(out), "--quiet", "--overwrite"])
    print(f"fern process: {time.perf_counter() - start:.1f} s")
    assert code == 0 and not (out / "stale.txt").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    return out, before


def _umeyama(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``(s, R, t)`` minimising ``sum |s R x_i + t - y_i|^2`` for ``x, y [N, 3]`` (Umeyama 1991)."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    u, d, vt = np.linalg.svd(yc.T @ xc / len(x))
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / (xc ** 2).sum(1).mean())
    return scale, rot, my - scale * rot @ mx


def _frames(scene: Path) -> tuple[dict, np.ndarray]:
    meta = json.loads((scene / "transforms.json").read_text())
    return meta, np.array([f["transform_matrix"] for f in meta["frames"]])


def test_fern_registers_all_and_reports(fern_scene):
    scene, _ = fern_scene
    report = json.loads((scene / "process_report.json").read_text())
    assert report["images_registered"] == report["images_total"] == 20
    assert report["mean_reprojection_error_px"] < 1.0
    assert report["points3D"] > 500 and report["guided_matching"]  # 190 pairs: guided by default
    assert {"check", "features", "matching", "mapping", "undistortion", "downscale", "total"} <= set(report["seconds"])
    meta, _ = _frames(scene)
    assert meta["camera_model"] == "OPENCV" and meta["k1"] == meta["k2"] == meta["p1"] == meta["p2"] == 0.0
    assert meta["ply_file_path"] == "sparse_pc.ply" and (scene / "sparse_pc.ply").is_file()
    names = [f["file_path"] for f in meta["frames"]]
    assert names == sorted(names) and all(n.startswith("images/") and (scene / n).is_file() for n in names)
    from PIL import Image

    for factor in (2, 4, 8):
        with Image.open(scene / f"images_{factor}" / Path(names[0]).name) as img:
            assert img.size == (meta["w"] // factor, meta["h"] // factor)


def test_fern_poses_match_llff_reference(fern_scene):
    """Camera centres agree with poses_bounds.npy up to a similarity (1 % of the spread); so do the rotations."""
    scene, _ = fern_scene
    _, c2w = _frames(scene)
    llff = np.load(FERN / "poses_bounds.npy")[:, :15].reshape(-1, 3, 5)
    ref_centres, ref_rot = llff[:, :, 3], llff[:, :, :3]
    scale, rot, t = _umeyama(c2w[:, :3, 3], ref_centres)
    aligned = scale * c2w[:, :3, 3] @ rot.T + t
    spread = max(np.linalg.norm(a - b) for a in ref_centres for b in ref_centres)
    assert np.linalg.norm(aligned - ref_centres, axis=1).max() < 0.01 * spread
    # LLFF camera axes [down, right, backwards] -> OpenGL [right, up, backwards]
    ref_gl = np.stack([ref_rot[:, :, 1], -ref_rot[:, :, 0], ref_rot[:, :, 2]], axis=-1)
    ours = rot @ c2w[:, :3, :3]
    cos = (np.trace(np.swapaxes(ours, 1, 2) @ ref_gl, axis1=1, axis2=2) - 1) / 2
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.0


def _project_opengl(c2w: np.ndarray, fx, fy, cx, cy, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``[N, P, 2]`` and depths ``[N, P]`` of points ``[P, 3]`` in OpenGL cameras ``c2w [N, 4, 4]``."""
    w2c = np.linalg.inv(c2w)
    cam = xyz @ np.swapaxes(w2c[:, :3, :3], 1, 2) + w2c[:, None, :3, 3]
    depth = -cam[..., 2]
    return np.stack([fx * cam[..., 0] / depth + cx, -fy * cam[..., 1] / depth + cy], -1), depth


def test_transforms_cameras_reproject_sparse_points(fern_scene):
    """transforms.json (OpenGL c2w) and COLMAP's model (OpenCV w2c) give the same pixels; points land in view."""
    scene, _ = fern_scene
    meta, c2w = _frames(scene)
    from plyfile import PlyData

    vertex = PlyData.read(str(scene / "sparse_pc.ply"))["vertex"]
    xyz = np.stack([vertex[k] for k in ("x", "y", "z")], 1).astype(np.float64)
    uv, depth = _project_opengl(c2w, meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"], xyz)
    model = read_colmap_model(scene / "sparse" / "0")
    w2c = np.stack([m for _, _, m in sorted(model.images, key=lambda item: item[0])])
    cam = xyz @ np.swapaxes(w2c[:, :3, :3], 1, 2) + w2c[:, None, :3, 3]  # OpenCV: x right, y down, z forward
    k = next(iter(model.cameras.values())).params
    uv_cv = np.stack([k[0] * cam[..., 0] / cam[..., 2] + k[2], k[1] * cam[..., 1] / cam[..., 2] + k[3]], -1)
    np.testing.assert_allclose(uv, uv_cv, atol=1e-6)
    np.testing.assert_allclose(depth, cam[..., 2], atol=1e-9)
    inside = (depth > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < meta["w"]) & (uv[..., 1] >= 0) & (uv[..., 1] < meta["h"])
    assert inside.mean(axis=1).min() > 0.7  # forward-facing capture: most points are in every view
    flipped = c2w @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV axes read as OpenGL: points behind the cameras
    assert (_project_opengl(flipped, meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"], xyz)[1] > 0).mean() < 0.3


def test_scene_loads_with_both_readers_and_holds_out_every_8th(fern_scene):
    scene, _ = fern_scene
    train, test = load_scene(scene, "train"), load_scene(scene, "test")
    assert test.names == ["image000", "image008", "image016"] and len(train.names) == 17
    meta, _ = _frames(scene)
    assert tuple(train.images.shape[1:3]) == (meta["h"], meta["w"])
    colmap = load_colmap(scene, "test")
    assert colmap.names == test.names
    np.testing.assert_allclose(test.cameras.c2w, colmap.cameras.c2w, atol=1e-5)
    assert abs(test.normalization.scale - colmap.normalization.scale) < 1e-6 * colmap.normalization.scale
    assert test.points is not None and len(test.points.xyz) == len(colmap.points.xyz)
    assert test.cameras.distortion is None
    # the tracks come with the points, from the model beside transforms.json: the same as COLMAP's reader
    assert torch.equal(train.points.tracks, load_colmap(scene, "train").points.tracks)
    depth = SparseDepth.from_tracks(train.points, train.cameras)
    per_view = depth.offsets[1:] - depth.offsets[:-1]
    assert len(depth) >= 0.99 * len(train.points.tracks) and int(per_view.min()) >= 100  # a few land off the edge


def test_input_folder_unchanged(fern_scene):
    _, before = fern_scene
    assert _tree_hash(FERN / "images") == before


def _run_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("omnifield: error:")
    return err


def _write_image(path: Path, seed: int, size=(64, 48)) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_bad_inputs_fail_with_one_line(tmp_path, capsys):
    out = tmp_path / "scene"
    assert "input not found" in _run_error(["process", str(tmp_path / "nope"), "--out", str(out)], capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images found" in _run_error(["process", str(empty), "--out", str(out)], capsys)
    photos = tmp_path / "photos"
    photos.mkdir()
    _write_image(photos / "a.png", 0)
    (photos / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert "b.jpg: cannot read image" in _run_error(["process", str(photos), "--out", str(out)], capsys)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert "--overwrite" in _run_error(["process", str(photos), "--out", str(taken)], capsys)
    assert (taken / "keep.txt").read_text() == "mine"
    assert "inside the input" in _run_error(["process", str(photos), "--out", str(photos / "scene")], capsys)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unmatchable_photos_fail_cleanly(tmp_path, capsys):
    photos = tmp_path / "noise"
    photos.mkdir()
    for i in range(4):
        _write_image(photos / f"{i}.png", i, size=(160, 120))
    err = _run_error(["process", str(photos), "--out", str(tmp_path / "scene"), "--quiet"], capsys)
    assert "--max-image-size" in err
    assert not (tmp_path / "scene").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_laplacian_variance_analytic():
    y, x = np.mgrid[0:32, 0:40].astype(np.float64)
    assert laplacian_variance(x ** 2 + 3 * y) == pytest.approx(0.0, abs=1e-3)  # Laplacian 2 everywhere
    checker = np.where((x + y) % 2 == 0, 1.0, -1.0)  # Laplacian +-8
    assert laplacian_variance(checker) == pytest.approx(64.0)
    assert list(pick_sharpest(np.array([1.0, 5, 2, 0, 3, 3, 9]), 3)) == [1, 4, 6]


def test_video_frames_pick_the_sharp_one_of_each_window(tmp_path, capsys):
    from PIL import Image, ImageFilter

    from omnifield.io.video import write_video

    sharp = [np.asarray(Image.open(FERN / "images" / f"image00{i}.png").convert("RGB")) for i in range(3)]
    blur = [np.asarray(Image.fromarray(s).filter(ImageFilter.GaussianBlur(4))) for s in sharp]
    frames = [blur[0], sharp[0], sharp[1], blur[1], blur[2], sharp[2]]  # windows of 2: sharp at 1, 2, 5
    video = write_video(tmp_path / "clip.mp4", frames, fps=6)
    assert video.suffix == ".mp4"
    names = extract_frames(video, tmp_path / "frames", 3)
    assert names == ["frame_00001.jpg", "frame_00002.jpg", "frame_00005.jpg"]
    with Image.open(tmp_path / "frames" / names[0]) as img:
        assert img.size == (sharp[0].shape[1], sharp[0].shape[0])
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    assert "cannot" in _run_error(["process", str(garbage), "--out", str(tmp_path / "scene")], capsys)


def test_sift_upsamples_only_small_images(tmp_path):
    """COLMAP's default first octave (-1, a 2x upsampled image) is kept for small photos; large ones skip it."""
    import imageio.v3 as iio

    from omnifield.apps.process.sfm import first_octave

    iio.imwrite(tmp_path / "small.png", np.zeros((378, 504, 3), np.uint8))
    iio.imwrite(tmp_path / "large.png", np.zeros((1039, 1558, 3), np.uint8))
    assert first_octave(tmp_path / "small.png", 1600) == -1
    assert first_octave(tmp_path / "large.png", 1600) == 0
    assert first_octave(tmp_path / "large.png", 800) == -1  # resized below 1000 px before extraction
