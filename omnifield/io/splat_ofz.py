"""Post-processing of a Compact-3DGS scene into one small file (Lee et al. 2024, Sec. 4.4).

As in the paper: masked Gaussians are dropped; opacities and the colour hash table get 8-bit min-max
quantization; scale and rotation are RVQ indices (uint8, 6 stages) plus the half-precision codebooks;
means and the colour MLP stay in half precision. The tensors go into a safetensors blob (JSON config
in its header, no pickle) that is then entropy-coded with LZMA (the paper uses Huffman coding).
:func:`load_compressed` rebuilds a renderable :class:`CompactGaussianScene`.
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import torch
import torch.nn.functional as F

from omnifield.config import config_from_dict, config_to_dict
from omnifield.errors import OmnifieldError
from omnifield.fields.compact_gaussians import CompactConfig, CompactGaussianScene
from omnifield.fields.rvq import decode_codes
from omnifield.io.atomic import atomic_path

MAGIC = b"OFSPLATZ3"  # 3: colour MLP output as a degree-0 SH coefficient (2: sigmoid)


def quantize_u8(values: torch.Tensor, lo: float | None = None,
                hi: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """8-bit min-max quantization: ``values -> (codes uint8 like values, range [2] = (lo, hi))``."""
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    step = max(hi - lo, 1e-12) / 255.0
    codes = ((values - lo) / step).round().clamp(0, 255).to(torch.uint8)
    return codes, torch.tensor([lo, hi], dtype=torch.float32)


def dequantize_u8(codes: torch.Tensor, value_range: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`quantize_u8` (float32)."""
    lo, hi = value_range.tolist()
    return lo + codes.float() * (max(hi - lo, 1e-12) / 255.0)


@torch.no_grad()
def save_compressed(scene: CompactGaussianScene, path: str | Path) -> int:
    """Write the compressed scene to ``path`` (atomically); returns its size in bytes."""
    from safetensors.torch import save

    if not scene.use_rvq:
        scene.enable_rvq()
    keep = ~scene.prune_mask()
    order = torch.argsort(scene.means[keep, 0])  # neighbours next to each other compress better
    sel = torch.nonzero(keep).squeeze(1)[order]
    opacity, opacity_range = quantize_u8(torch.sigmoid(scene.opacity_logits[sel]), 0.0, 1.0)
    tensors = {
        "means": scene.means[sel].half(),
        "opacity": opacity,
        "opacity_range": opacity_range,
        "scale_idx": scene.scale_vq.indices(scene.log_scales[sel]).to(torch.uint8),
        "rotation_idx": scene.rotation_vq.indices(F.normalize(scene.quats[sel], dim=-1)).to(torch.uint8),
        "scale_codebooks": scene.scale_vq.codebooks.half(),
        "rotation_codebooks": scene.rotation_vq.codebooks.half(),
        "aabb": scene.aabb.float(),
    }
    for name, value in scene.color_grid.state_dict().items():
        tensors[f"color_grid/{name}"], tensors[f"color_grid_range/{name}"] = quantize_u8(value.float())
    for name, value in scene.color_mlp.state_dict().items():
        tensors[f"color_mlp/{name}"] = value.half()
    blob = save({k: v.contiguous().cpu() for k, v in tensors.items()},
                metadata={"omnifield": json.dumps({"config": config_to_dict(scene.cfg)})})
    data = MAGIC + lzma.compress(blob, preset=9 | lzma.PRESET_EXTREME)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return len(data)


def load_compressed(path: str | Path) -> CompactGaussianScene:
    """Read a file written by :func:`save_compressed`."""
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise OmnifieldError(f"{path}: file not found")
    raw = path.read_bytes()
    if not raw.startswith(MAGIC):
        version = "an older version's" if raw.startswith(MAGIC[:-1]) else "not a"
        raise OmnifieldError(f"{path}: {version} compressed omnifield splat file (expected {MAGIC.decode()})")
    try:
        blob = lzma.decompress(raw[len(MAGIC):])
        tensors = load(blob)
        header_len = int.from_bytes(blob[:8], "little")
        meta = json.loads(json.loads(blob[8 : 8 + header_len])["__metadata__"]["omnifield"])
    except Exception as exc:  # noqa: BLE001 - lzma/safetensors/json errors all mean a corrupt file
        raise OmnifieldError(f"{path}: corrupt compressed splat file ({exc})") from None
    cfg = config_from_dict(meta["config"], f"{path} config")
    if not isinstance(cfg, CompactConfig):
        raise OmnifieldError(f"{path}: config is not a Compact-3DGS config")
    try:
        return _scene_from_tensors(tensors, cfg)
    except (KeyError, IndexError, RuntimeError) as exc:
        raise OmnifieldError(f"{path}: corrupt compressed splat file (bad or missing tensor: {exc})") from None


def _scene_from_tensors(tensors: dict[str, torch.Tensor], cfg: CompactConfig) -> CompactGaussianScene:
    """Undo the quantization of :func:`save_compressed`."""
    log_scales = decode_codes(tensors["scale_codebooks"].float(), tensors["scale_idx"])
    quats = decode_codes(tensors["rotation_codebooks"].float(), tensors["rotation_idx"])
    n = len(log_scales)
    opacity = dequantize_u8(tensors["opacity"], tensors["opacity_range"]).clamp(1e-6, 1 - 1e-6)
    scene = CompactGaussianScene(tensors["means"].float(), log_scales, quats, torch.logit(opacity),
                                 tensors["aabb"], cfg, mask_logits=torch.full((n,), 10.0))
    grid = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("color_grid/")}
    mlp = {k.split("/", 1)[1]: v.float() for k, v in tensors.items() if k.startswith("color_mlp/")}
    scene.color_grid.load_state_dict({k: dequantize_u8(v, tensors[f"color_grid_range/{k}"]) for k, v in grid.items()})
    scene.color_mlp.load_state_dict(mlp)
    return scene
