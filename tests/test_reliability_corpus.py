"""A corpus of malformed datasets, configs, checkpoints and options run through every CLI command.

Every case must end with exit code 2 and exactly one line on stderr (``omnifield: error: ...``, or
argparse's ``omnifield <command>: error: ...``) that contains the expected message (no traceback, no
other exception type), and must leave every file it was given unchanged (the case's folder and the
shared scene and run are hashed before and after). The cases are built from a small valid scene and
a valid one-step run by the ``CORPUS`` table below; each sub-command has at least five.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from omnifield.apps.recon.run import CHECKPOINT
from omnifield.cli import build_parser, main
from omnifield.io.checkpoint import save_checkpoint
from tests.conftest import lego_subset
from tests.test_recon_cli import TINY

RUN_FLAGS = [*TINY, "--steps", "1", "--no-eval"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """``(scene, run)``: lego with 2 train / 1 test views, and a one-step hash-grid run trained on it."""
    root = tmp_path_factory.mktemp("base")
    scene = lego_subset(root / "scene", {"train": 2, "test": 1})
    run = root / "run"
    assert main(["train", str(scene), "--out", str(run), *RUN_FLAGS]) == 0
    return scene, run


# ----------------------------------------------------------------------------------- builders
def _scene(tmp: Path, base, edit=None) -> Path:
    """A copy of the base scene with ``edit(meta)`` applied to ``transforms_train.json``."""
    scene = tmp / "scene"
    shutil.copytree(base[0], scene)
    if edit is not None:
        path = scene / "transforms_train.json"
        meta = json.loads(path.read_text())
        result = edit(meta)
        if isinstance(result, bytes):
            path.write_bytes(result)
        else:
            path.write_text(result if isinstance(result, str) else json.dumps(meta))
    return scene


def _frame0(fn):
    def edit(meta):
        fn(meta["frames"][0])
    return edit


def _matrix(value):
    return _frame0(lambda f: f.__setitem__("transform_matrix", value))


def _image(tmp: Path, base, write) -> Path:
    """Replace the first training image with what ``write(path)`` puts there."""
    scene = _scene(tmp, base)
    write(scene / "train" / "r_1.png")
    return scene


def train(edit=None, *extra):
    return lambda tmp, base: ["train", str(_scene(tmp, base, edit)), "--out", str(tmp / "out"), *RUN_FLAGS, *extra]


def train_image(write):
    return lambda tmp, base: ["train", str(_image(tmp, base, write)), "--out", str(tmp / "out"), *RUN_FLAGS]


def train_opts(*extra):
    return lambda tmp, base: ["train", str(base[0]), "--out", str(tmp / "out"), *RUN_FLAGS, *extra]


def _run_copy(tmp: Path, base, damage=None) -> Path:
    run = tmp / "run"
    shutil.copytree(base[1], run)
    if damage is not None:
        damage(run / CHECKPOINT)
    return run


def on_run(command: list[str], damage=None, *extra):
    """``omnifield <command> <damaged run copy> ...``."""
    return lambda tmp, base: [*command, str(_run_copy(tmp, base, damage)), *extra]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _rewrite_meta(fn):
    """Rewrite the checkpoint's JSON metadata with ``fn(meta) -> meta`` (tensors kept)."""
    def damage(path: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = fn(json.loads(header["omnifield"]))
        save_file(tensors, str(path), metadata={"omnifield": meta if isinstance(meta, str) else json.dumps(meta)})
    return damage


def _drop_tensors(prefix: str):
    def damage(path: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys() if not k.startswith(prefix)}
        # written as a checkpoint of an older version (no checksum), so the loader reaches the missing tensors
        save_file(tensors, str(path), metadata={k: v for k, v in header.items() if k != "omnifield_blake2b"})
    return damage


def _plain_safetensors(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(path))


def _pickle_file(path: Path) -> None:
    path.write_bytes(b"\x80\x04\x95\x0f\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94.")


def _set(meta, key, value):
    meta[key] = value
    return meta


def _set_in(section, key, value):
    def fn(meta):
        meta["config"][section][key] = value
        return meta
    return fn


def _n_levels(meta):
    meta["config"]["field"]["encoding"]["n_levels"] = 6
    return meta


def _config(key, value=None):
    """Set (or, with ``None``, delete) ``meta['config'][key]``."""
    def fn(meta):
        if value is None:
            meta["config"].pop(key)
        else:
            meta["config"][key] = value
        return meta
    return fn


def _splat_checkpoint(path: Path) -> None:
    """Make ``path`` a (tiny) splat-run checkpoint."""
    import torch

    save_checkpoint(path, {"means": torch.zeros(1, 3)}, {"method": "splat", "config": {"method": "splat"}})


def command(*words, run=False, damage=None, out=None):
    """``omnifield <words...>`` with ``@run`` replaced by a (damaged) run copy, ``@scene`` by the base scene,
    ``@tmp`` by the case's folder, ``@grids`` by an empty folder, ``@out`` by a copy of the run (damaged by ``out``) used as an output folder."""
    def build(tmp: Path, base):
        subs = {"@scene": str(base[0]), "@tmp": str(tmp), "@grids": str(tmp / "grids")}
        (tmp / "grids").mkdir(exist_ok=True)  # no grids: the MAE commands check options before reading grids
        if run or damage is not None:
            subs["@run"] = str(_run_copy(tmp, base, damage))
        if out is not None or any("@out" in w for w in words):
            target = tmp / "existing"
            shutil.copytree(base[1], target)
            if out is not None:
                out(target / CHECKPOINT)
            subs["@out"] = str(target)
        return [re.sub("@[a-z]+", lambda m: subs.get(m.group(0), m.group(0)), w) for w in words]
    return build


def _ply(tmp: Path, xyz: np.ndarray) -> Path:
    from plyfile import PlyData, PlyElement

    vertex = np.array([tuple(p) for p in xyz], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    path = tmp / "points.ply"
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))
    return path


def train_init_points(write):
    """``train --method splat --init points`` from the point file ``write(tmp)`` returns."""
    return lambda tmp, base: ["train", str(base[0]), "--method", "splat", "--out", str(tmp / "out"), "--steps", "1",
                              "--no-eval", "--init", "points", "--init-points", str(write(tmp))]


def _transforms_scene(tmp: Path, base, **extra) -> Path:
    """The base scene as one Instant-NGP ``transforms.json`` (focal length in pixels) with ``extra`` keys."""
    scene = _scene(tmp, base)
    meta = json.loads((scene / "transforms_train.json").read_text())
    for split in ("train", "test"):
        (scene / f"transforms_{split}.json").unlink()
    meta.update(fl_x=1111.0, **extra)
    (scene / "transforms.json").write_text(json.dumps(meta))
    return scene


def train_transforms(**extra):
    return lambda tmp, base: ["train", str(_transforms_scene(tmp, base, **extra)), "--out", str(tmp / "out"), *RUN_FLAGS]


def _colmap_scene(tmp: Path, base, camera: str = "1 PINHOLE 200 200 278 278 100 100", name: str = "r_2.png",
                  images_bin: bytes | None = None) -> Path:
    """The base scene's two training views as a COLMAP text model (or a binary one with ``images_bin``);
    the first is held out for ``test``, the second, named ``name``, is read for ``train``."""
    scene = tmp / "colmap"
    (scene / "images").mkdir(parents=True)
    sparse = scene / "sparse" / "0"
    sparse.mkdir(parents=True)
    for i in (1, 2):
        shutil.copy(base[0] / "train" / f"r_{i}.png", scene / "images" / f"r_{i}.png")
    if images_bin is not None:
        (sparse / "cameras.bin").write_bytes(struct.pack("<QiiQQ4d", 1, 1, 1, 200, 200, 278, 278, 100, 100))
        (sparse / "images.bin").write_bytes(images_bin)
        return scene
    (sparse / "cameras.txt").write_text(camera + "\n")
    (sparse / "images.txt").write_text(f"1 1 0 0 0 0 0 4 1 r_1.png\n\n2 1 0 0 0 0.1 0 4 1 {name}\n\n")
    return scene


def train_colmap(**kwargs):
    return lambda tmp, base: ["train", str(_colmap_scene(tmp, base, **kwargs)), "--out", str(tmp / "out"), *RUN_FLAGS]


# ------------------------------------------------------------------------------------- corpus
IDENTITY4 = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]]
ROTATED_SCALED = [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]]
SHEARED = [[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]]

CORPUS = [
    # --- datasets
    ("data-folder-missing", lambda tmp, base: ["train", str(tmp / "nowhere"), "--out", str(tmp / "o"), *RUN_FLAGS],
     r"nowhere: data folder not found"),
    ("transforms-missing", train(lambda m: None), None),  # replaced below
    ("transforms-not-json", train(lambda m: "{frames: [1, 2"), r"transforms_train.json: malformed JSON"),
    ("transforms-binary", train(lambda m: b"\xff\xfe\x00{"), r"malformed JSON"),
    ("transforms-is-a-list", train(lambda m: "[1, 2, 3]"), r"missing the 'frames' list"),
    ("frames-not-a-list", train(lambda m: m.__setitem__("frames", {"a": 1})), r"missing the 'frames' list"),
    ("frames-empty", train(lambda m: m.__setitem__("frames", [])), r"'frames' is empty, no usable images"),
    ("frame-is-a-string", train(lambda m: m["frames"].__setitem__(0, "r_0.png")),
     r"frames\[0\]: needs 'file_path' and 'transform_matrix'"),
    ("frame-no-matrix", train(_frame0(lambda f: f.pop("transform_matrix"))),
     r"frames\[0\]: needs 'file_path' and 'transform_matrix'"),
    ("frame-no-file-path", train(_frame0(lambda f: f.pop("file_path"))),
     r"frames\[0\]: needs 'file_path' and 'transform_matrix'"),
    ("image-not-found", train(_frame0(lambda f: f.__setitem__("file_path", "./train/missing"))),
     r"frames\[0\]: image './train/missing' not found"),
    ("file-path-is-a-folder", train(_frame0(lambda f: f.__setitem__("file_path", "./train"))),
     r"frames\[0\]: image './train' not found"),
    ("matrix-3x3", train(_matrix([[1, 0, 0], [0, 1, 0], [0, 0, 1]])), r"transform_matrix must be 4x4, got shape \(3, 3\)"),
    ("matrix-ragged", train(_matrix([[1, 0, 0, 0], [0, 1], [0, 0, 1, 0], [0, 0, 0, 1]])),
     r"frames\[0\]: transform_matrix is not a numeric 4x4 matrix"),
    ("matrix-strings", train(_matrix([["a"] * 4] * 4)), r"transform_matrix is not a numeric 4x4 matrix"),
    ("matrix-nan", train(_matrix([[float("nan"), 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]])),
     r"frames\[0\]: transform_matrix contains NaN or Inf"),
    ("matrix-inf", train(_matrix([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, float("inf")], [0, 0, 0, 1]])),
     r"transform_matrix contains NaN or Inf"),
    ("matrix-scaled", train(_matrix(ROTATED_SCALED)), r"rotation is not orthonormal \(not a rigid camera pose\)"),
    ("matrix-sheared", train(_matrix(SHEARED)), r"rotation is not orthonormal"),
    ("fov-missing", train(lambda m: m.pop("camera_angle_x")), r"'camera_angle_x' must be a number in \(0, pi\), got None"),
    ("fov-negative", train(lambda m: m.__setitem__("camera_angle_x", -0.5)), r"'camera_angle_x' must be a number"),
    ("fov-string", train(lambda m: m.__setitem__("camera_angle_x", "wide")), r"got 'wide'"),
    ("focal-string", train(lambda m: m.__setitem__("fl_x", "long")), r"'fl_x' must be a positive number, got 'long'"),
    ("focal-zero", train(lambda m: m.__setitem__("fl_x", 0)), r"'fl_x' must be a positive number, got 0"),
    ("principal-point-nan", train(lambda m: m.update(fl_x=100.0, cx=float("nan"))), r"'cx' must be a finite number"),
    ("image-truncated", train_image(lambda p: p.write_bytes(p.read_bytes()[:300])), r"r_1.png: cannot read image"),
    ("image-empty", train_image(lambda p: p.write_bytes(b"")), r"r_1.png: cannot read image: empty or unreadable"),
    ("image-is-text", train_image(lambda p: p.write_text("not an image")), r"r_1.png: cannot read image"),
    ("image-jpeg-garbage", train_image(lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))),
     r"r_1.png: cannot read image"),
    ("image-two-channels", train_image(lambda p: iio.imwrite(p, np.zeros((200, 200, 2), np.uint8))),
     r"r_1.png: expected an RGB or RGBA image, got array of shape \(200, 200, 2\)"),
    ("image-size-differs", train_image(lambda p: iio.imwrite(p, np.zeros((100, 100, 4), np.uint8))),
     r"r_2.png: image size 200x200 differs from the first frame's 100x100"),
    # --- configs and options
    ("downscale-zero", train_opts("--downscale", "0"), r"downscale must be a positive integer, got 0"),
    ("downscale-too-large", train_opts("--downscale", "1000"), r"downscale factor 1000 is larger than the image size"),
    ("lr-zero", train_opts("--lr", "0"), r"invalid option: learning rate must be > 0, got 0.0"),
    ("lr-negative", train_opts("--lr=-1e-3"), r"learning rate must be > 0"),
    ("steps-zero", train_opts("--steps", "0"), r"invalid option: steps must be >= 1, got 0"),
    ("minutes-negative", train_opts("--minutes", "-2"), r"minutes must be >= 0"),
    ("batch-rays-zero", train_opts("--batch-rays", "0"), r"batch_rays and max_batch_rays must be >= 1"),
    ("set-unknown-section", train_opts("--set", "model.width=3"), r"--set 'model.width=3': must start with field\."),
    ("set-unknown-option", train_opts("--set", "field.colour=3"), r"--set colour: field has no option 'colour'"),
    ("set-no-value", train_opts("--set", "train.lr"), r"--set 'lr': expected KEY=VALUE"),
    ("set-not-a-number", train_opts("--set", "train.lr=fast"), r"lr: expected a number, got 'fast'"),
    ("set-not-a-bool", train_opts("--set", "train.random_background=maybe"), r"expected true/false, got 'maybe'"),
    ("set-lr-zero", train_opts("--set", "train.lr=0"), r"--set lr: learning rate must be > 0"),
    ("set-into-a-scalar", train_opts("--set", "train.lr.x=1"), r"train.lr is not a config section"),
    ("method-unknown", train_opts("--method", "voxels"), r"unknown field 'voxels'; choose from: hashgrid"),
    # --- checkpoints
    ("run-folder-missing", lambda tmp, base: ["eval", str(tmp / "norun")], r"norun: run folder not found"),
    ("checkpoint-missing", on_run(["eval"], lambda p: p.unlink()), r"checkpoint.safetensors: checkpoint not found"),
    ("checkpoint-truncated", on_run(["eval"], _truncate), r"checkpoint.safetensors is corrupt or truncated"),
    ("checkpoint-empty", on_run(["render"], lambda p: p.write_bytes(b"")), r"is corrupt or truncated"),
    ("checkpoint-is-a-pickle", on_run(["eval"], _pickle_file), r"is corrupt or truncated"),
    ("checkpoint-foreign-safetensors", on_run(["eval"], _plain_safetensors),
     r"not an omnifield checkpoint \(no 'omnifield' metadata\)"),
    ("checkpoint-meta-not-json", on_run(["eval"], _rewrite_meta(lambda m: "{oops")),
     r"checkpoint metadata is not valid JSON"),
    ("checkpoint-no-config", on_run(["eval"], _rewrite_meta(lambda m: _set(m, "config", None))),
     r"checkpoint has no field config"),
    ("checkpoint-other-architecture", on_run(["eval"], _rewrite_meta(_n_levels)),
     r"checkpoint does not match the|has shape .* the architecture expects"),
    ("checkpoint-missing-tensors", on_run(["eval"], _drop_tensors("field/")),
     r"checkpoint does not match the \w+ architecture \(missing \["),
    ("checkpoint-unknown-config-type", on_run(["eval"], _rewrite_meta(_set_in("field", "type", "nope"))),
     r"field config: unknown config type 'nope'"),
    ("checkpoint-unknown-config-key", on_run(["eval"], _rewrite_meta(_set_in("train", "colour", 1))),
     r"train config: unknown key 'colour' for config type 'train'"),
    ("checkpoint-impossible-config", on_run(["eval"], _rewrite_meta(_set_in("train", "lr", -1.0))),
     r"train config: invalid 'train' config: learning rate must be > 0"),
    ("checkpoint-wrong-type", on_run(["eval"], _rewrite_meta(_set_in("train", "steps", "many"))),
     r"train config.steps: expected int, got 'many'"),
    ("checkpoint-nan-learning-rate", on_run(["render"], _rewrite_meta(_set_in("train", "lr", float("nan")))),
     r"train config.lr: expected float, got nan"),
    ("eval-chunk-rays-zero", on_run(["eval"], None, "--chunk-rays", "0"), r"--chunk-rays must be >= 1, got 0"),
    ("render-chunk-rays-negative", on_run(["render"], None, "--chunk-rays=-5"), r"--chunk-rays must be >= 1, got -5"),
    ("checkpoint-no-train-state", lambda tmp, base: ["train", str(base[0]), "--out",
                                                     str(_run_copy(tmp, base, _drop_tensors("rng/"))),
                                                     "--resume", "--steps", "2", "--no-eval"],
     r"checkpoint lacks a usable training state"),
    # --- other entry points
    ("convert-run-missing", lambda tmp, base: ["convert", str(tmp / "norun"), "--method", "mlp"],
     r"norun: not a run folder"),
    ("convert-truncated-checkpoint", on_run(["convert"], _truncate, "--method", "mlp", "--steps", "1"),
     r"is corrupt or truncated"),
    ("export-splat-of-a-field-run", on_run(["export", "splat"], None), r"splat"),
    ("nav-export-truncated-checkpoint", lambda tmp, base: ["nav", "export", str(_run_copy(tmp, base, _truncate)),
                                                          "--out", str(tmp / "e")],
     r"is corrupt or truncated"),
    ("mae-grid-truncated-checkpoint", on_run(["mae", "grid"], _truncate, "--out", "g.npz"), r"is corrupt or truncated"),
    ("mae-pretrain-no-grids", lambda tmp, base: ["mae", "pretrain", str(tmp), "--out", str(tmp / "m")],
     r"no .npz grid files found"),
    ("pde-unknown-problem", lambda tmp, base: ["pde", "solve", "nonexistent"], r"unknown PDE problem 'nonexistent'"),
    ("fit-image-not-an-image", lambda tmp, base: ["fit", "image", str(_write(tmp / "x.png", b"junk")),
                                                  "--out", str(tmp / "f")], r"x.png: cannot read image"),
    ("fit-sdf-mesh-missing", lambda tmp, base: ["fit", "sdf", str(tmp / "none.obj"), "--out", str(tmp / "f")],
     r"none.obj: cannot read mesh"),
]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _photos(tmp: Path, files: dict[str, bytes]) -> Path:
    """A folder ``tmp/photos`` holding ``files`` (name -> bytes)."""
    (tmp / "photos").mkdir(exist_ok=True)
    for name, data in files.items():
        _write(tmp / "photos" / name, data)
    return tmp / "photos"


def _no_transforms(tmp, base):
    scene = _scene(tmp, base)
    (scene / "transforms_train.json").unlink()
    return ["train", str(scene), "--out", str(tmp / "out"), *RUN_FLAGS]


CORPUS[1] = ("transforms-missing", _no_transforms, r"no transforms_train.json, transforms.json or COLMAP sparse/0 model found")


NAN, HUGE_TABLE = "nan", ["--set", "field.encoding.log2_hashmap_size=30", "--set", "field.encoding.n_features_per_level=8"]
SPLAT_RUN = dict(damage=_splat_checkpoint)
CORPUS += [
    # --- train: never into a run of another kind or method; impossible sizes and budgets refused up front
    ("train-splat-over-nerf-run", command("train", "@scene", "--method", "splat", "--out", "@out", "--steps", "2"),
     r"existing holds a hashgrid NeRF run; refusing to write a splat run there \(use another --out\)"),
    ("train-splat-resume-over-nerf-run", command("train", "@scene", "--method", "splat", "--out", "@out", "--resume"),
     r"existing holds a hashgrid NeRF run; refusing to write a splat run there \(use another --out\)"),
    ("train-mlp-resume-on-hashgrid-run", command("train", "@scene", "--method", "mlp", "--out", "@out", "--resume"),
     r"holds a hashgrid NeRF run; refusing to write an mlp NeRF run there"),
    ("train-over-splat-run", command("train", "@scene", "--out", "@out", *RUN_FLAGS, out=_splat_checkpoint),
     r"holds a splat run; refusing to write a hashgrid NeRF run there"),
    ("train-resume-splat-run", command("train", "@scene", "--out", "@out", "--resume", out=_splat_checkpoint),
     r"holds no training state"),
    ("train-hash-table-too-large", command("train", "@scene", "--out", "@tmp/o", *HUGE_TABLE), r"training its hash tables \(\d+ M parameters.*needs about "
     r"[\d.]+ [GTP]iB, more than the"),
    ("train-minutes-nan", train_opts("--minutes", NAN), r"--minutes must be a finite number, got nan"),
    ("train-splat-minutes-negative", train_opts("--method", "splat", "--minutes=-1"), r"--minutes must be >= 0"),
    ("train-init-points-empty-ply", train_init_points(lambda tmp: _ply(tmp, np.zeros((0, 3)))),
     r"points.ply: point cloud is empty \(0 vertices\)"),
    ("train-init-points-nan", train_init_points(lambda tmp: _ply(tmp, np.array([[0, 0, 0], [np.nan, 0, 1.0]]))),
     r"points.ply: 1 of 2 points have NaN or Inf coordinates"),
    ("train-init-points-binary-txt", train_init_points(lambda tmp: _write(tmp / "points3D.txt", bytes(range(256)))),
     r"points3D.txt: not a text file; expected COLMAP points3D.txt"),
    ("image-rgb-among-rgba", train_image(lambda p: iio.imwrite(p, np.zeros((200, 200, 3), np.uint8))),
     r"r_2.png: has 4 channels \(RGBA\), the first frame has 3 \(RGB\); convert all frames to one layout"),
    ("image-path-outside-scene", train(_frame0(lambda f: f.__setitem__("file_path", "../../elsewhere/r_0"))),
     r"image path '../../elsewhere/r_0' points outside the scene folder .*OMNIFIELD_ALLOW_OUTSIDE_PATHS=1"),
    ("transforms-distortion-implausible", train_transforms(k1=1e6), r"implausible lens distortion coefficient 1e\+06"),
    ("transforms-absolute-path-outside", train_transforms(frames=[{"file_path": "/etc/hostname",
                                                                  "transform_matrix": IDENTITY4}]),
     r"image path '/etc/hostname' points outside the scene folder"),
    ("colmap-focal-nan", train_colmap(camera="1 PINHOLE 200 200 nan 278 100 100"),
     r"cameras.txt camera 1: camera intrinsics contain NaN or Inf"),
    ("colmap-focal-negative", train_colmap(camera="1 PINHOLE 200 200 -5 278 100 100"),
     r"camera 1: focal lengths must be positive, got fx=-5.0"),
    ("colmap-image-outside-scene", train_colmap(name="r_9/../../../../r_2.png"),
     r"COLMAP image 'r_9/../../../../r_2.png': image path .* points outside the scene folder"),
    ("colmap-images-bin-garbage", train_colmap(images_bin=struct.pack("<Q", 1) + bytes(64) + b"\xff\xfe\x00"),
     r"malformed COLMAP binary model"),
    # --- eval / render: run metadata, sizes
    ("eval-meta-no-renderer", on_run(["eval"], _rewrite_meta(_config("renderer"))),
     r"checkpoint metadata lacks the renderer config"),
    ("eval-meta-downscale-text", on_run(["eval"], _rewrite_meta(_config("downscale", "abc"))),
     r"checkpoint metadata 'config.downscale' must be an integer >= 1, got 'abc'"),
    ("eval-meta-step-text", on_run(["eval"], _rewrite_meta(lambda m: _set(m, "step", "many"))),
     r"checkpoint metadata 'step' must be an integer >= 0, got 'many'"),
    ("eval-of-an-incomplete-splat-run", command("eval", "@run", **SPLAT_RUN), r"incomplete splat checkpoint"),
    ("eval-ofz-garbage", lambda tmp, base: ["eval", str(_write(tmp / "s.ofz", b"junk"))],
     r"s.ofz: not a compressed omnifield splat file"),
    ("render-ofz-missing", lambda tmp, base: ["render", str(tmp / "none.ofz")], r"none.ofz: file not found"),
    ("render-of-an-incomplete-splat-run", command("render", "@run", "--orbit", **SPLAT_RUN),
     r"incomplete splat checkpoint"),
    ("render-frames-zero", command("render", "@run", "--orbit", "--frames", "0", run=True),
     r"--frames must be in 1\.\.\d+, got 0"),
    ("render-frames-huge", command("render", "@run", "--orbit-only", "--frames", "20000", run=True),
     r"--frames must be in 1\.\.\d+, got 20000"),
    ("render-fps-zero", command("render", "@run", "--orbit", "--fps", "0", run=True), r"--fps must be >= 1, got 0"),
    ("render-meta-step-text", on_run(["render"], _rewrite_meta(lambda m: _set(m, "step", "many"))),
     r"'step' must be an integer >= 0"),
    # --- export mesh / points / video / splat
    ("export-mesh-threshold-nan", command("export", "mesh", "@run", "--threshold", NAN, run=True),
     r"--threshold must be a finite number"),
    ("export-mesh-resolution-zero", command("export", "mesh", "@run", "--resolution", "0", run=True),
     r"omnifield export mesh: error: argument --resolution: must be positive, got 0"),
    ("export-mesh-min-component", command("export", "mesh", "@run", "--min-component", "5", run=True),
     r"--min-component must be a fraction in \[0, 1\], got 5.0"),
    ("export-mesh-run-missing", command("export", "mesh", "@tmp/norun"), r"norun: run folder not found"),
    ("export-mesh-truncated", on_run(["export", "mesh"], _truncate), r"is corrupt or truncated"),
    ("export-mesh-of-an-incomplete-splat-run", command("export", "mesh", "@run", **SPLAT_RUN),
     r"incomplete splat checkpoint"),
    ("export-points-ofz-garbage", lambda tmp, base: ["export", "points", str(_write(tmp / "s.ofz", b"OFSPLATZ3junk"))],
     r"s.ofz: corrupt compressed splat file"),
    ("export-points-zero", command("export", "points", "@run", "--n-points", "0", run=True),
     r"argument --n-points: must be positive, got 0"),
    ("export-points-threshold-inf", command("export", "points", "@run", "--threshold", "inf", run=True),
     r"--threshold must be a finite number, got inf"),
    ("export-points-resolution-text", command("export", "points", "@run", "--resolution", "high", run=True),
     r"argument --resolution: invalid int value: 'high'"),
    ("export-points-run-missing", command("export", "points", "@tmp/norun"), r"norun: run folder not found"),
    ("export-points-meta-no-renderer", on_run(["export", "points"], _rewrite_meta(_config("renderer"))),
     r"lacks the renderer config"),
    ("export-video-fps-zero", command("export", "video", "@run", "--fps", "0", run=True),
     r"argument --fps: must be positive, got 0"),
    ("export-video-frames-zero", command("export", "video", "@run", "--frames", "0", run=True),
     r"argument --frames: must be positive, got 0"),
    ("export-video-path-missing", command("export", "video", "@run", "--path", "@tmp/none.json", run=True),
     r"none.json': neither 'orbit' nor an existing camera path file"),
    ("export-video-run-missing", command("export", "video", "@tmp/norun"), r"norun: run folder not found"),
    ("export-video-truncated", on_run(["export", "video"], _truncate), r"is corrupt or truncated"),
    ("export-splat-run-missing", command("export", "splat", "@tmp/norun"), r"norun/checkpoint.safetensors: checkpoint "
                                                                          r"not found"),
    ("export-splat-truncated", on_run(["export", "splat"], _truncate), r"is corrupt or truncated"),
    ("export-splat-empty-checkpoint", on_run(["export", "splat"], lambda p: p.write_bytes(b"")),
     r"is corrupt or truncated"),
    ("export-splat-incomplete", command("export", "splat", "@run", **SPLAT_RUN), r"incomplete splat checkpoint"),
    # --- convert
    ("convert-n-gaussians-zero", command("convert", "@run", "--method", "splat", "--n-gaussians", "0", "--out",
                                         "@tmp/c", run=True), r"--n-gaussians must be >= 1, got 0"),
    ("convert-over-a-run", command("convert", "@run", "--method", "mlp", "--out", "@out", run=True),
     r"existing holds a hashgrid NeRF run; refusing to write an mlp NeRF run there"),
    ("convert-splat-over-a-run", command("convert", "@run", "--method", "splat", "--out", "@out", run=True),
     r"refusing to write a splat run there"),
    ("convert-minutes-nan", command("convert", "@run", "--method", "mlp", "--minutes", NAN, run=True),
     r"--minutes must be a finite number"),
    ("convert-steps-zero", command("convert", "@run", "--method", "mlp", "--steps", "0", run=True),
     r"--steps must be >= 1, got 0"),
    ("convert-hash-table-too-large", command("convert", "@run", "--method", "hashgrid", "--out", "@tmp/c", *HUGE_TABLE,
                                             run=True), r"--method hashgrid: training its hash tables .* needs about"),
    # --- pde solve
    ("pde-steps-negative", command("pde", "solve", "heat", "--steps=-5", "--out", "@tmp/p"), r"--steps must be >= 0"),
    ("pde-steps-zero", command("pde", "solve", "heat", "--steps", "0", "--out", "@tmp/p"), r"--steps must be > 0"),
    ("pde-lr-nan", command("pde", "solve", "heat", "--lr", NAN, "--out", "@tmp/p"), r"--lr must be a finite number"),
    ("pde-insr-dt-nan", command("pde", "solve", "heat", "--solver", "insr", "--insr-dt", NAN, "--out", "@tmp/p"),
     r"--insr-dt must be a finite number"),
    ("pde-lr-zero", command("pde", "solve", "heat", "--lr", "0", "--out", "@tmp/p"), r"--lr must be > 0, got 0.0"),
    ("pde-unknown-solver", command("pde", "solve", "heat", "--solver", "magic", "--out", "@tmp/p"), r"magic"),
    ("pde-over-a-run", command("pde", "solve", "heat", "--steps", "1", "--out", "@out"),
     r"holds a hashgrid NeRF run; refusing to write a PDE solution there"),
    # --- fit image / sdf
    ("fit-image-size-tiny", command("fit", "image", "@scene/train/r_1.png", "--out", "@tmp/f", "--size", "2"),
     r"--size must be >= 8, got 2"),
    ("fit-image-params-tiny", command("fit", "image", "@scene/train/r_1.png", "--out", "@tmp/f", "--params", "10"),
     r"--params >= 1000"),
    ("fit-image-params-huge", command("fit", "image", "@scene/train/r_1.png", "--out", "@tmp/f", "--params", "1e14"),
     r"argument --params: invalid int value: '1e14'"),
    ("fit-image-params-too-many", command("fit", "image", "@scene/train/r_1.png", "--out", "@tmp/f", "--params",
                                          "100000000000000"), r"--params 100000000000000: training the field needs about"),
    ("fit-image-over-a-run", command("fit", "image", "@scene/train/r_1.png", "--out", "@out"),
     r"holds a hashgrid NeRF run; refusing to write an image fit there"),
    ("fit-image-minutes-nan", command("fit", "image", "@scene/train/r_1.png", "--out", "@tmp/f", "--minutes", NAN),
     r"--minutes must be a finite number"),
    ("fit-sdf-resolution-low", command("fit", "sdf", "@tmp/m.obj", "--out", "@tmp/f", "--resolution", "8"),
     r"--resolution must be >= 16, got 8"),
    ("fit-sdf-samples-low", command("fit", "sdf", "@tmp/m.obj", "--out", "@tmp/f", "--samples", "10"),
     r"--samples must be >= 1000, got 10"),
    ("fit-sdf-over-a-run", command("fit", "sdf", "@tmp/m.obj", "--out", "@out"),
     r"refusing to write an sdf fit there"),
    ("fit-sdf-steps-negative", command("fit", "sdf", "@tmp/m.obj", "--out", "@tmp/f", "--steps=-1"),
     r"--steps must be >= 0, got -1"),
    ("fit-sdf-mesh-is-text", lambda tmp, base: ["fit", "sdf", str(_write(tmp / "m.obj", b"v 1 2\nf 9 9 9\n")),
                                                "--out", str(tmp / "f")], r"m.obj: "),
    # --- mae
    ("mae-scenes-count-zero", command("mae", "scenes", "--out", "@tmp/g", "--count", "0"), r"--count must be >= 1, got 0"),
    ("mae-scenes-resolution-zero", command("mae", "scenes", "--out", "@tmp/g", "--resolution", "0"), r"--resolution must be >= 1"),
    ("mae-scenes-supersample-zero", command("mae", "scenes", "--out", "@tmp/g", "--supersample", "0"),
     r"--supersample must be >= 1"),
    ("mae-scenes-resolution-negative", command("mae", "scenes", "--out", "@tmp/g", "--resolution=-4"),
     r"--resolution must be >= 1, got -4"),
    ("mae-scenes-into-a-run", command("mae", "scenes", "--out", "@out", "--count", "1"),
     r"holds a hashgrid NeRF run; refusing to write an MAE grid folder there"),
    ("mae-render-size-zero", command("mae", "render", "--out", "@tmp/r", "--size", "0"), r"size >= 8 \(got 60, 10, 0\)"),
    ("mae-render-no-train-views", command("mae", "render", "--out", "@tmp/r", "--train-views", "0"), r"need n_train >= 1"),
    ("mae-render-test-views-negative", command("mae", "render", "--out", "@tmp/r", "--test-views=-1"), r"n_test >= 1"),
    ("mae-render-into-a-run", command("mae", "render", "--out", "@out"), r"refusing to write a procedural scene there"),
    ("mae-render-size-text", command("mae", "render", "--out", "@tmp/r", "--size", "big"), r"argument --size: invalid int"),
    ("mae-grid-supersample-zero", command("mae", "grid", "@run", "--out", "@tmp/g.npz", "--supersample", "0", run=True),
     r"--supersample must be >= 1, got 0"),
    ("mae-grid-max-views-zero", command("mae", "grid", "@run", "--out", "@tmp/g.npz", "--max-views", "0", run=True),
     r"--max-views must be >= 1, got 0"),
    ("mae-grid-resolution-zero", command("mae", "grid", "@run", "--out", "@tmp/g.npz", "--resolution", "0", run=True),
     r"--resolution must be >= 1, got 0"),
    ("mae-grid-run-missing", command("mae", "grid", "@tmp/norun", "--out", "@tmp/g.npz"), r"norun: run folder not found"),
    ("mae-grid-of-a-splat-run", command("mae", "grid", "@run", "--out", "@tmp/g.npz", **SPLAT_RUN), r"holds a splat run"),
    ("mae-pretrain-steps-zero", command("mae", "pretrain", "@grids", "--out", "@tmp/m", "--steps", "0"),
     r"--steps or --minutes must be positive"),
    ("mae-pretrain-batch-zero", command("mae", "pretrain", "@grids", "--out", "@tmp/m", "--batch", "0"),
     r"--batch must be >= 1, got 0"),
    ("mae-pretrain-lr-nan", command("mae", "pretrain", "@grids", "--out", "@tmp/m", "--lr", NAN),
     r"--lr must be a finite number"),
    ("mae-pretrain-lr-zero", command("mae", "pretrain", "@grids", "--out", "@tmp/m", "--lr", "0"),
     r"--lr must be > 0, got 0.0"),
    ("mae-pretrain-over-a-run", command("mae", "pretrain", "@grids", "--out", "@out"),
     r"refusing to write a mae model there"),
    ("mae-finetune-labelled-zero", command("mae", "finetune", "@grids", "--out", "@tmp/m", "--labelled", "0"),
     r"--labelled must be >= 1, got 0"),
    ("mae-finetune-steps-zero", command("mae", "finetune", "@grids", "--out", "@tmp/m", "--steps", "0"),
     r"--steps or --minutes must be positive"),
    ("mae-finetune-batch-zero", command("mae", "finetune", "@grids", "--out", "@tmp/m", "--batch", "0"),
     r"--batch must be >= 1"),
    ("mae-finetune-lr-negative", command("mae", "finetune", "@grids", "--out", "@tmp/m", "--lr=-1"),
     r"--lr must be > 0, got -1.0"),
    ("mae-finetune-over-a-run", command("mae", "finetune", "@grids", "--out", "@out"),
     r"refusing to write a segmenter model there"),
    ("mae-eval-model-missing", command("mae", "eval", "@tmp/none", "@grids"), r"none: checkpoint not found"),
    ("mae-eval-a-nerf-run", command("mae", "eval", "@run/checkpoint.safetensors", "@grids", run=True),
     r"not a NeRF-MAE model \(kind None\)"),
    ("mae-eval-skip-negative", command("mae", "eval", "@tmp/none", "@grids", "--skip=-1"), r"--skip and --limit must be"),
    ("mae-eval-limit-negative", command("mae", "eval", "@tmp/none", "@grids", "--limit=-3"), r"got 0 and -3"),
    ("mae-eval-truncated-model", lambda tmp, base: ["mae", "eval", str(_write(tmp / "model.safetensors", b"\x08" * 9)),
                                                    str(tmp)], r"model.safetensors is corrupt or truncated"),
    # --- nav
    ("nav-run-pillars", command("nav", "run", "--out", "@tmp/n", "--pillars", "99"), r"--pillars must be between 0 and 8"),
    ("nav-run-steps-zero", command("nav", "run", "--out", "@tmp/n", "--steps", "0"),
     r"--steps must be positive, got 0"),
    ("nav-run-over-a-run", command("nav", "run", "--out", "@out", "--quick"),
     r"refusing to write a navigation output there"),
    ("nav-run-seed-text", command("nav", "run", "--out", "@tmp/n", "--seed", "x"), r"argument --seed: invalid int"),
    ("nav-run-unknown-option", command("nav", "run", "--out", "@tmp/n", "--fast"),
     r"unrecognized arguments: --fast"),
    ("nav-export-voxel-nan", command("nav", "export", "--scene", "room", "--out", "@tmp/n", "--voxel", NAN),
     r"--voxel must be a finite number"),
    ("nav-export-voxel-tiny", command("nav", "export", "--scene", "room", "--out", "@tmp/n", "--voxel", "1e-5"),
     r"--voxel 1e-05 gives a grid of 440000 x 440000 x 240000 cells, which needs about [\d.]+ EiB"),
    ("nav-export-voxel-zero", command("nav", "export", "--scene", "room", "--out", "@tmp/n", "--voxel", "0"),
     r"--voxel must be positive, got 0.0"),
    ("nav-export-two-sources", command("nav", "export", "@run", "--scene", "room", "--out", "@tmp/n",
                                       run=True), r"give exactly one of a run folder RUN or --scene room"),
    ("nav-export-over-a-run", command("nav", "export", "--scene", "room", "--out", "@out"),
     r"refusing to write a navigation output there"),
    # --- process (inputs and the output folder are checked before structure from motion starts)
    ("process-input-missing", lambda tmp, base: ["process", str(tmp / "none"), "--out", str(tmp / "s")],
     r"none: input not found"),
    ("process-no-images", lambda tmp, base: ["process", str(_photos(tmp, {})), "--out", str(tmp / "s")],
     r"photos: no images found"),
    ("process-corrupt-image", lambda tmp, base: ["process", str(_photos(tmp, {"a.jpg": b"not a jpeg"})),
                                                 "--out", str(tmp / "s")], r"a.jpg: cannot read image"),
    ("process-out-not-empty", lambda tmp, base: ["process", str(_photos(tmp, {})), "--out",
                                                 str(_write(tmp / "full" / "x.txt", b"x").parent)],
     r"full: --out exists and is not empty"),
    ("process-out-inside-input", lambda tmp, base: ["process", str(_photos(tmp, {})), "--out",
                                                    str(tmp / "photos" / "scene")], r"must not be inside the input"),
    ("process-num-frames", lambda tmp, base: ["process", str(_photos(tmp, {})), "--out", str(tmp / "s"),
                                              "--num-frames", "2"], r"--num-frames must be at least 3, got 2"),
    # --- view (options are checked before the server starts)
    ("view-port-too-large", command("view", "@run", "--port", "99999", run=True), r"--port must be in 0..65535"),
    ("view-port-negative", command("view", "@run", "--port=-1", run=True), r"--port must be in 0..65535, got -1"),
    ("view-width-zero", command("view", "@run", "--viewer-width", "0", run=True), r"--viewer-width must be >= 16"),
    ("view-run-missing", command("view", "@tmp/norun"), r"norun: run folder not found"),
    ("view-truncated", on_run(["view"], _truncate), r"is corrupt or truncated"),
    ("view-of-an-incomplete-splat-run", command("view", "@run", **SPLAT_RUN), r"incomplete splat checkpoint"),
]


def test_corpus_is_large_and_named_uniquely():
    names = [c[0] for c in CORPUS]
    assert len(names) >= 150 and len(set(names)) == len(names)


def _leaf_commands(parser=None, prefix=()) -> list[tuple[str, ...]]:
    """Every runnable sub-command of ``omnifield`` as a word tuple, e.g. ``('export', 'mesh')``."""
    parser = parser or build_parser()
    subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    if not subs:
        return [prefix]
    return [leaf for name, child in subs[0].choices.items() for leaf in _leaf_commands(child, (*prefix, name))]


def _command_of(argv: list[str], leaves: list[tuple[str, ...]]) -> tuple[str, ...]:
    return max((leaf for leaf in leaves if tuple(argv[: len(leaf)]) == leaf), key=len)


def test_every_command_has_five_bad_inputs(base, tmp_path):
    leaves = [leaf for leaf in _leaf_commands() if leaf != ("pde", "list")]
    counts = {leaf: 0 for leaf in leaves}
    for i, (_, build, _) in enumerate(CORPUS):
        (tmp_path / str(i)).mkdir()
        counts[_command_of(build(tmp_path / str(i), base), leaves)] += 1
    assert {" ".join(leaf): n for leaf, n in counts.items() if n < 5} == {}


def _tree_hash(*roots: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every file under ``roots``."""
    return {f"{i}/{p.relative_to(root)}": hashlib.sha256(p.read_bytes()).hexdigest()
            for i, root in enumerate(roots) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name,build,expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_gives_one_clear_line_and_exit_2(name, build, expected, base, tmp_path, capsys):
    argv = build(tmp_path, base)
    before = _tree_hash(tmp_path, *base)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "step/s" not in line]
    assert code == 2, err
    assert len(lines) == 1 and re.match(r"omnifield( [a-z]+)*: error: ", lines[0]), err
    assert re.search(expected, lines[0]), lines[0]
    assert _tree_hash(tmp_path, *base) == before, "a refused command changed files"
