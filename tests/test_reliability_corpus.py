"""A corpus of malformed datasets, configs and checkpoints run through the CLI entry points.

Every case must end with exit code 2 and exactly one line on stderr, ``omnifield: error: ...``,
that contains the expected message (no traceback, no other exception type). The cases are built
from a small valid scene and a valid one-step run by the ``CORPUS`` table below.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from omnifield.apps.recon.run import CHECKPOINT
from omnifield.cli import main
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
        save_file(tensors, str(path), metadata=header)
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


# ------------------------------------------------------------------------------------- corpus
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
    ("image-empty", train_image(lambda p: p.write_bytes(b"")), r"r_1.png: cannot read image"),
    ("image-is-text", train_image(lambda p: p.write_text("not an image")), r"r_1.png: cannot read image"),
    ("image-jpeg-garbage", train_image(lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))),
     r"r_1.png: cannot read image"),
    ("image-two-channels", train_image(lambda p: iio.imwrite(p, np.zeros((200, 200, 2), np.uint8))),
     r"r_1.png: expected an RGB or RGBA image, got array of shape \(200, 200, 2\)"),
    ("image-size-differs", train_image(lambda p: iio.imwrite(p, np.zeros((100, 100, 4), np.uint8))),
     r"r_2.png: image size \(200, 200\) differs from the first frame's \(100, 100\)"),
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
    ("checkpoint-truncated", on_run(["eval"], _truncate), r"checkpoint.safetensors: corrupt or truncated checkpoint"),
    ("checkpoint-empty", on_run(["render"], lambda p: p.write_bytes(b"")), r"corrupt or truncated checkpoint"),
    ("checkpoint-is-a-pickle", on_run(["eval"], _pickle_file), r"corrupt or truncated checkpoint"),
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
    ("convert-run-missing", lambda tmp, base: ["convert", str(tmp / "norun"), "--to", "mlp"],
     r"norun: not a run folder"),
    ("convert-truncated-checkpoint", on_run(["convert"], _truncate, "--to", "mlp", "--steps", "1"),
     r"corrupt or truncated checkpoint"),
    ("export-splat-of-a-field-run", on_run(["export", "splat"], None), r"splat"),
    ("nav-export-truncated-checkpoint", lambda tmp, base: ["nav", "export", "--run",
                                                          str(_run_copy(tmp, base, _truncate)), "--out", str(tmp / "e")],
     r"corrupt or truncated checkpoint"),
    ("mae-grid-truncated-checkpoint", on_run(["mae", "grid"], _truncate, "g.npz"), r"corrupt or truncated checkpoint"),
    ("mae-pretrain-no-grids", lambda tmp, base: ["mae", "pretrain", str(tmp), "--out", str(tmp / "m")],
     r"no .npz grid files found"),
    ("pde-unknown-problem", lambda tmp, base: ["pde", "solve", "nonexistent"], r"unknown PDE problem 'nonexistent'"),
    ("fit-image-not-an-image", lambda tmp, base: ["fit", "image", str(_write(tmp / "x.png", b"junk")),
                                                  "--out", str(tmp / "f")], r"x.png: cannot read image"),
    ("fit-sdf-mesh-missing", lambda tmp, base: ["fit", "sdf", str(tmp / "none.obj"), "--out", str(tmp / "f")],
     r"none.obj: cannot read mesh"),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _no_transforms(tmp, base):
    scene = _scene(tmp, base)
    (scene / "transforms_train.json").unlink()
    return ["train", str(scene), "--out", str(tmp / "out"), *RUN_FLAGS]


CORPUS[1] = ("transforms-missing", _no_transforms, r"no transforms_train.json, transforms.json or COLMAP sparse/0 model found")


def test_corpus_is_large_and_named_uniquely():
    names = [c[0] for c in CORPUS]
    assert len(names) >= 30 and len(set(names)) == len(names)


@pytest.mark.parametrize("name,build,expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_gives_one_clear_line_and_exit_2(name, build, expected, base, tmp_path, capsys):
    argv = build(tmp_path, base)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "step/s" not in line]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("omnifield: error: "), err
    assert re.search(expected, lines[0]), lines[0]
