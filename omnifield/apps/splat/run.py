"""A splat run folder: ``checkpoint.safetensors`` (scene tensors + JSON meta), ``config.json``, ``metrics.json``,
``scene.ply`` (standard 3DGS) and, for Compact-3DGS, ``scene.ofz`` (the compressed file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from omnifield.apps.splat.compact import CompactConfig, CompactGaussianScene
from omnifield.config import config_from_dict, config_to_dict
from omnifield.errors import OmnifieldError
from omnifield.fields.gaussians import GaussianScene
from omnifield.io.atomic import write_text_atomic
from omnifield.io.checkpoint import load_checkpoint, save_checkpoint

CHECKPOINT = "checkpoint.safetensors"


def save_splat_run(out_dir: Path, scene: GaussianScene, step: int, config: dict[str, Any]) -> None:
    """Atomically write the scene and its settings to ``out_dir``."""
    meta: dict[str, Any] = {"method": "splat", "step": step, "config": config,
                            "active_sh_degree": scene.active_sh_degree}
    if isinstance(scene, CompactGaussianScene):
        meta["compact"] = config_to_dict(scene.cfg)
        meta["use_rvq"] = scene.use_rvq
        meta["color_output"] = scene.color_output
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.json", json.dumps(config, indent=2))
    save_checkpoint(out_dir / CHECKPOINT, dict(scene.state_dict()), meta)


def load_splat_run(run_dir: str | Path) -> GaussianScene:
    """Re-open the scene of a splat run folder (plain or compact)."""
    run_dir = Path(run_dir)
    tensors, meta = load_checkpoint(run_dir / CHECKPOINT)
    if meta.get("method") != "splat":
        raise OmnifieldError(f"{run_dir / CHECKPOINT}: not a splat run (method {meta.get('method')!r})")
    try:
        if "compact" in meta:
            if meta.get("color_output", "sigmoid") != CompactGaussianScene.color_output:
                raise OmnifieldError(f"{run_dir / CHECKPOINT}: written by an older omnifield whose Compact-3DGS colour "
                                     f"field decoded colours differently ({meta.get('color_output', 'sigmoid')}); "
                                     "train the scene again")
            cfg = config_from_dict(meta["compact"], f"{run_dir / CHECKPOINT} compact config")
            if not isinstance(cfg, CompactConfig):
                raise OmnifieldError(f"{run_dir / CHECKPOINT}: bad compact config")
            scene = CompactGaussianScene(tensors["means"], tensors["log_scales"], tensors["quats"],
                                         tensors["opacity_logits"], tensors["aabb"], cfg, tensors["mask_logits"])
            scene.load_state_dict(tensors)
            scene.use_rvq = bool(meta.get("use_rvq", False))
        else:
            sh = torch.cat([tensors["sh_dc"], tensors["sh_rest"]], dim=1)
            scene = GaussianScene(tensors["means"], tensors["log_scales"], tensors["quats"], tensors["opacity_logits"], sh)
        scene.active_sh_degree = min(int(meta.get("active_sh_degree", scene.max_sh_degree)), scene.max_sh_degree)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise OmnifieldError(f"{run_dir / CHECKPOINT}: incomplete splat checkpoint ({exc})") from None
    return scene.eval()
