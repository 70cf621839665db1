"""Post-processing of a Compact-3DGS scene into one small file (Lee et al. 2024, Sec. 4.4, simplified).

Masked Gaussians are dropped; means, opacities, the hash table and the MLP are stored in half
precision; scale and rotation as RVQ indices (uint8, 6 stages) plus the half-precision codebooks.
The tensors go into a safetensors blob (JSON config in its header, no pickle) that is then
entropy-coded with LZMA. :func:`load_compressed` rebuilds a renderable :class:`CompactGaussianScene`.
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import torch
import torch.nn.functional as F

from omnifield.apps.splat.compact import CompactConfig, CompactGaussianScene
from omnifield.config import config_from_dict, config_to_dict
from omnifield.errors import OmnifieldError
from omnifield.io.atomic import atomic_path

MAGIC = b"OFSPLATZ1"


@torch.no_grad()
def save_compressed(scene: CompactGaussianScene, path: str | Path) -> int:
    """Write the compressed scene to ``path`` (atomically); returns its size in bytes."""
    from safetensors.torch import save

    if not scene.use_rvq:
        scene.enable_rvq()
    keep = ~scene.prune_mask()
    order = torch.argsort(scene.means[keep, 0])  # neighbours next to each other compress better
    sel = torch.nonzero(keep).squeeze(1)[order]
    tensors = {
        "means": scene.means[sel].half(),
        "opacity_logits": scene.opacity_logits[sel].half(),
        "scale_idx": scene.scale_vq.indices(scene.log_scales[sel]).to(torch.uint8),
        "rotation_idx": scene.rotation_vq.indices(F.normalize(scene.quats[sel], dim=-1)).to(torch.uint8),
        "scale_codebooks": scene.scale_vq.codebooks.half(),
        "rotation_codebooks": scene.rotation_vq.codebooks.half(),
        "aabb": scene.aabb.float(),
    }
    for name, value in scene.color_grid.state_dict().items():
        tensors[f"color_grid/{name}"] = value.half()
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
        raise OmnifieldError(f"{path}: not a compressed omnifield splat file")
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
    scale_cb, rot_cb = tensors["scale_codebooks"].float(), tensors["rotation_codebooks"].float()
    stages = torch.arange(scale_cb.shape[0])
    log_scales = scale_cb[stages[None], tensors["scale_idx"].long()].sum(1)
    quats = rot_cb[stages[None], tensors["rotation_idx"].long()].sum(1)
    n = len(log_scales)
    scene = CompactGaussianScene(tensors["means"].float(), log_scales, quats, tensors["opacity_logits"].float(),
                                 tensors["aabb"], cfg, mask_logits=torch.full((n,), 10.0))
    scene.color_grid.load_state_dict({k.split("/", 1)[1]: v.float() for k, v in tensors.items() if k.startswith("color_grid/")})
    scene.color_mlp.load_state_dict({k.split("/", 1)[1]: v.float() for k, v in tensors.items() if k.startswith("color_mlp/")})
    return scene
