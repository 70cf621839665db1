"""Backend presets for the image (2-D) and SDF (3-D) tasks, sized to a parameter budget.

Each backend has one size knob (hash-table size, finest plane resolution, number of bases, MLP width);
:func:`field_for_budget` picks the knob value whose parameter count is closest to the budget.
Backends: ``mlp`` (positional encoding + ReLU MLP), ``mlp_cam`` (the same MLP with CAM),
``hashgrid``, ``hashgrid_cam``, ``triplane`` (one plane in 2-D: a multi-scale dense grid), ``neurbf``.
"""

from __future__ import annotations

from typing import Any

from omnifield.errors import OmnifieldError
from omnifield.fields.cam import CAMConfig
from omnifield.fields.frequency import FrequencyConfig
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.image_field import ImageFieldConfig
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.neurbf import NeuRBFConfig
from omnifield.fields.sdf_field import SDFFieldConfig
from omnifield.fields.sine_mlp import SineMLPConfig
from omnifield.fields.triplane import TriPlaneConfig

BACKENDS = ("mlp", "mlp_cam", "hashgrid", "hashgrid_cam", "triplane", "neurbf")


def _parts(backend: str, dims: int, knob: int) -> tuple[Any, Any]:
    """(encoding config, decoder config) of ``backend`` for ``dims``-D inputs at size ``knob``."""
    small_mlp = MLPConfig(width=64, n_hidden_layers=2)
    n_freq = 10 if dims == 2 else 8
    cam_res = 32 if dims == 2 else 16
    if backend == "mlp":
        return FrequencyConfig(n_frequencies=n_freq), MLPConfig(width=knob, n_hidden_layers=3)
    if backend == "mlp_cam":
        base = MLPConfig(width=knob, n_hidden_layers=3)
        return FrequencyConfig(n_frequencies=n_freq), CAMConfig(base=base, coord_dims=dims, resolution=cam_res)
    hash_max = 512 if dims == 2 else 256
    if backend in ("hashgrid", "hashgrid_cam"):
        enc = HashGridConfig(n_levels=16, n_features_per_level=2, log2_hashmap_size=knob, max_resolution=hash_max)
        if backend == "hashgrid":
            return enc, small_mlp
        # a 16^2 modulation grid in 2-D (32^2 x 128 channels alone would exceed small budgets)
        return enc, CAMConfig(base=small_mlp, coord_dims=dims, resolution=16)
    if backend == "triplane":  # knob: the finest of four scales (r/8, r/4, r/2, r)
        resolutions = tuple(max(2, knob // s) for s in (8, 4, 2, 1))
        aggregation, n_features = ("sum", 4) if dims == 2 else ("product", 8)
        return TriPlaneConfig(resolutions=resolutions, n_features=n_features, aggregation=aggregation), small_mlp
    if backend == "neurbf":
        grid = HashGridConfig(n_levels=4, n_features_per_level=2, log2_hashmap_size=12, base_resolution=8, max_resolution=64)
        enc = NeuRBFConfig(n_bases=knob, n_neighbors=4 if dims == 2 else 8, n_channels=32, grid=grid)
        return enc, SineMLPConfig(width=64, n_hidden_layers=3)
    raise OmnifieldError(f"unknown backend {backend!r}; choose from: {', '.join(BACKENDS)}")


_KNOBS: dict[str, list[int]] = {
    "mlp": [32, 48, 64, 96, 128, 192, 256, 384, 512],
    "mlp_cam": [8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256],
    "hashgrid": list(range(8, 21)),
    "hashgrid_cam": list(range(8, 21)),
    "triplane": [16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 512],
    "neurbf": [256, 512, 1024, 2048, 4096, 8192, 16384, 32768],
}


def count_parameters(module) -> int:
    """Number of trainable scalars of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _make(task: str, backend: str, knob: int) -> Any:
    if task == "image":
        enc, dec = _parts(backend, 2, knob)
        return ImageFieldConfig(encoding=enc, decoder=dec)
    if task == "sdf":
        enc, dec = _parts(backend, 3, knob)
        return SDFFieldConfig(encoding=enc, decoder=dec)
    raise OmnifieldError(f"unknown task {task!r}; choose image or sdf")


def parameter_count(cfg: Any) -> int:
    """Trainable parameters of the field that ``cfg`` builds."""
    return count_parameters(cfg.build())


def field_for_budget(task: str, backend: str, budget: int) -> Any:
    """The config of ``backend`` for ``task`` ("image" | "sdf") with parameter count closest to ``budget``."""
    if backend not in _KNOBS:
        raise OmnifieldError(f"unknown backend {backend!r}; choose from: {', '.join(BACKENDS)}")
    best: tuple[float, Any] | None = None
    for knob in _KNOBS[backend]:
        cfg = _make(task, backend, knob)
        n = parameter_count(cfg)
        score = abs(n - budget) / budget
        if best is None or score < best[0]:
            best = (score, cfg)
        if n > budget:
            break
    assert best is not None
    return best[1]

