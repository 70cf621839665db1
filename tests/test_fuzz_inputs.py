"""Property-based fuzzing of the input readers: whatever the bytes, the transforms.json reader,
the config parser and ``--set`` overrides either succeed or raise :class:`OmnifieldError`."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnifield.apps.recon.config import TrainConfig
from omnifield.config import config_from_dict, config_to_dict, registered_config_types
from omnifield.config_overrides import apply_override
from omnifield.data.blender import load_blender
from omnifield.errors import OmnifieldError
from omnifield.fields.registry import field_config, field_names
from omnifield.renderers.volume import VolumeRendererConfig

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=5)),
                           max_leaves=20)

IDENTITY = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 4.0], [0.0, 0.0, 0.0, 1.0]]
matrices = st.one_of(
    json_values,
    st.just(IDENTITY),
    st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=5), max_size=5),
)
frames = st.fixed_dictionaries(
    {},
    optional={"file_path": st.one_of(st.sampled_from(["img", "img.png", "./img", "missing", "", "/", ".."]),
                                     json_values),
              "transform_matrix": matrices},
)
near_valid_meta = st.fixed_dictionaries(
    {"frames": st.one_of(st.lists(frames, max_size=3), json_values)},
    optional={"camera_angle_x": st.one_of(st.floats(allow_nan=True, allow_infinity=True), json_values),
              "fl_x": scalars, "fl_y": scalars, "cx": scalars, "cy": scalars},
)


def _one_line_or_loaded(refusal: str | None) -> bool:
    """A reader either refused its input with one clear line (as the CLI prints it) or loaded it (``None``)
    and what it returned passed the usability checks of its loader below."""
    return refusal is None or (bool(refusal) and "\n" not in refusal)


def _load(text: bytes, downscale: int = 1) -> str | None:
    """Load ``text`` as a Blender transforms file beside a 4x4 image: the refusal, or ``None`` when usable."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        iio.imwrite(root / "img.png", np.full((4, 4, 4), 200, np.uint8))
        (root / "transforms_train.json").write_bytes(text)
        try:
            data = load_blender(root, "train", downscale)
        except OmnifieldError as exc:
            return str(exc)
        # a successful load is well formed: finite poses, images in [0, 1]
        assert data.images.shape[1:] == (4 // downscale, 4 // downscale, 4)
        assert bool(np.isfinite(data.cameras.c2w.numpy()).all())
        return None


@FUZZ
@given(near_valid_meta, st.sampled_from([1, 2, 3, 5]))
def test_transforms_reader_structured(meta, downscale):
    assert _one_line_or_loaded(_load(json.dumps(meta).encode(), downscale))


@FUZZ
@given(json_values)
def test_transforms_reader_any_json(meta):
    assert _one_line_or_loaded(_load(json.dumps(meta).encode()))


@FUZZ
@given(st.binary(max_size=64))
def test_transforms_reader_any_bytes(blob):
    assert _one_line_or_loaded(_load(blob))


def _valid_config_dicts():
    roots = [field_config(name) for name in field_names()] + [TrainConfig(), VolumeRendererConfig()]
    return [config_to_dict(cfg) for cfg in roots]


def _mutate(data, path_choice, value):
    """Replace one entry (chosen by ``path_choice``) of a nested config dict by ``value``."""
    nodes = []

    def walk(node):
        if isinstance(node, dict):
            for key in node:
                nodes.append((node, key))
                walk(node[key])
        elif isinstance(node, list):
            for i in range(len(node)):
                nodes.append((node, i))
                walk(node[i])

    walk(data)
    if nodes:
        parent, key = nodes[path_choice % len(nodes)]
        parent[key] = value
    return data


@FUZZ
@given(st.sampled_from(range(len(_valid_config_dicts()))), st.integers(0, 10**6), json_values,
       st.one_of(st.none(), st.text(max_size=6), st.sampled_from(sorted(registered_config_types()))))
def test_config_parser_mutated_configs(which, path_choice, value, extra_key):
    data = _mutate(json.loads(json.dumps(_valid_config_dicts()[which])), path_choice, value)
    if extra_key is not None:
        data[extra_key] = value
    try:
        config_from_dict(data, "fuzz")
    except OmnifieldError as exc:
        assert str(exc).startswith("fuzz")


@FUZZ
@given(json_values)
def test_config_parser_any_json(data):
    try:
        config_from_dict(data, "fuzz")
    except OmnifieldError as exc:
        assert str(exc) and "\n" not in str(exc)  # one clear line, as the CLI prints it


option_names = st.sampled_from(["lr", "steps", "minutes", "random_background", "seed", "grad_clip", "eps",
                                "encoding.n_levels", "encoding", "density_decoder.width", "aabb", "nope", "",
                                "lr.x", "grid.resolution", "sampler"])


@FUZZ
@given(st.sampled_from(["train", "field", "renderer"]), option_names,
       st.one_of(st.text(max_size=12), st.sampled_from(["nan", "inf", "-inf", "1e400", "-1", "0", "1.5", "true",
                                                        "[1,2", "[]", "[1e999]", "0x10", "1_000"])),
       st.booleans())
def test_overrides_never_crash(section, option, text, with_equals):
    roots = {"train": TrainConfig(), "field": field_config("hashgrid"), "renderer": VolumeRendererConfig()}
    assignment = f"{option}={text}" if with_equals else option
    try:
        cfg = apply_override(roots[section], assignment, section)
    except OmnifieldError as exc:
        assert "\n" not in str(exc)
        return
    if section == "train" and option in ("lr", "eps", "minutes"):
        value = getattr(cfg, option)
        assert isinstance(value, float) and not (option == "lr" and not value > 0)
        assert not math.isnan(value) or option != "lr"


def test_every_registered_config_round_trips_and_wrong_kinds_are_named():
    built = 0
    for name, cls in registered_config_types().items():
        try:
            cfg = cls()
        except TypeError:  # a config with required fields
            continue
        assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg, name
        built += 1
    assert built >= 10
    bad = config_to_dict(TrainConfig())
    for key, value, kind in (("steps", "100", "int"), ("steps", 1.5, "int"), ("lr", float("nan"), "float"),
                             ("random_background", 1, "bool"), ("lr", True, "float")):
        try:
            config_from_dict({**bad, key: value}, "run.json train")
        except OmnifieldError as exc:
            assert str(exc) == f"run.json train.{key}: expected {kind}, got {value!r}"
        else:
            raise AssertionError(f"{key}={value!r} accepted")


# ---------------------------------------------------------------- nerfstudio transforms.json and COLMAP models
def _load_ngp(meta) -> str | None:
    """Load ``meta`` as a transforms.json beside a 4x4 image: the refusal, or ``None`` when usable."""
    from omnifield.data.transforms import load_transforms

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        iio.imwrite(root / "img.png", np.full((4, 4, 3), 200, np.uint8))
        (root / "transforms.json").write_bytes(meta if isinstance(meta, bytes) else json.dumps(meta).encode())
        try:
            scene = load_transforms(root / "transforms.json", "train")
        except OmnifieldError as exc:
            return str(exc)
    # what loads is usable: one finite camera per image, positive focal lengths, the image's size
    cams = scene.cameras
    assert len(cams) == len(scene.images) >= 1 and scene.images.shape[1:3] == (cams.height, cams.width) == (4, 4)
    assert torch.isfinite(cams.c2w).all() and torch.isfinite(scene.images).all()
    assert (cams.fx > 0).all() and (cams.fy > 0).all() and torch.isfinite(torch.stack([cams.cx, cams.cy])).all()
    return None


ngp_meta = st.fixed_dictionaries(
    {"frames": st.one_of(st.lists(st.fixed_dictionaries({"file_path": st.just("img.png")},
                                                        optional={"transform_matrix": matrices, "fl_x": scalars,
                                                                  "mask_path": json_values}),
                                  max_size=3), json_values)},
    optional={k: scalars for k in ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "k1", "scale")}
    | {"offset": json_values, "camera_model": json_values},
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(ngp_meta, json_values, st.binary(max_size=48)))
def test_ngp_transforms_reader_never_crashes(meta):
    assert _one_line_or_loaded(_load_ngp(meta))


def test_a_valid_transforms_file_reaches_the_usability_checks():
    pose = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2], [0, 0, 0, 1]]
    meta = {"frames": [{"file_path": "img.png", "transform_matrix": pose}], "fl_x": 3.0, "w": 4, "h": 4}
    assert _load_ngp(meta) is None


colmap_text = st.lists(st.lists(st.one_of(st.sampled_from(["1", "PINHOLE", "SIMPLE_RADIAL", "4", "4.0", "nan",
                                                           "-1", "0", "img.png", "x"]), st.text(max_size=4)),
                                max_size=11), max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(colmap_text, colmap_text, st.booleans(), st.binary(max_size=96), st.binary(max_size=96))
def test_colmap_reader_never_crashes(cameras, images, binary, cameras_bin, images_bin):
    assert _one_line_or_loaded(_load_colmap(cameras, images, binary, cameras_bin, images_bin))


def test_a_valid_colmap_model_reaches_the_usability_checks():
    camera = [["1", "PINHOLE", "4", "4", "3", "3", "2", "2"]]
    assert _load_colmap(camera, [["1", "1", "0", "0", "0", "0", "0", "1", "1", "img.png"], []], False, b"", b"") is None
    undefined = _load_colmap(camera, [["1", "1", "0", "0", "0", "0", "0", "1", "7", "img.png"], []], False, b"", b"")
    assert "uses camera 7, which the model does not define" in undefined
    non_finite = _load_colmap(camera, [["1", "nan", "0", "0", "0", "0", "0", "1", "1", "img.png"], []], False, b"", b"")
    assert "non-finite pose" in non_finite


def _load_colmap(cameras, images, binary, cameras_bin, images_bin) -> str | None:
    """Read a COLMAP model from text rows or binary blobs: the refusal, or ``None`` when usable."""
    from omnifield.data.colmap import read_colmap_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if binary:
            (folder / "cameras.bin").write_bytes(cameras_bin)
            (folder / "images.bin").write_bytes(images_bin)
        else:
            (folder / "cameras.txt").write_text("\n".join(" ".join(r) for r in cameras))
            (folder / "images.txt").write_text("\n".join(" ".join(r) for r in images))
        try:
            model = read_colmap_model(folder)
        except OmnifieldError as exc:
            return str(exc)
    # what loads is usable: every image names a known camera and has a finite pose
    assert model.images and all(cam in model.cameras for _, cam, _ in model.images)
    assert all(np.isfinite(w2c).all() for _, _, w2c in model.images)
    return None
