"""A splat run folder: ``checkpoint.safetensors`` (scene tensors + JSON meta), ``config.json``, ``metrics.json``,
``log.jsonl``, ``scene.ply`` (standard 3DGS) and, for Compact-3DGS, ``scene.ofz`` (the compressed file).

The checkpoint holds the scene's ``state_dict`` under its own names (``means``, ``sh_dc``, ...) and, when
written by training, the state to continue it: the optimiser's moments (``optim/...``, sized to the
current number of Gaussians), the RNG states (``rng/...``) and the task's own (``train/...``: generator,
view order, density-control accumulators), with their JSON under ``meta["training"]``. Readers of the
scene ignore the rest, so checkpoints without a training state (older runs, ``convert --to splat``) open as
before; they cannot be resumed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from omnifield.config import config_from_dict, config_to_dict
from omnifield.errors import OmnifieldError
from omnifield.fields.compact_gaussians import CompactConfig, CompactGaussianScene
from omnifield.fields.gaussians import GaussianScene
from omnifield.io.atomic import write_text_atomic
from omnifield.io.checkpoint import load_checkpoint, save_checkpoint

CHECKPOINT = "checkpoint.safetensors"


def save_splat_run(out_dir: Path, scene: GaussianScene, step: int, config: dict[str, Any],
                   training: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None) -> None:
    """Atomically write the scene and its settings to ``out_dir``; ``training`` = ``(tensors, meta)`` of the
    training engine's state (names outside the scene's: ``optim/``, ``rng/``, ``train/``) to resume from."""
    meta: dict[str, Any] = {"method": "splat", "step": step, "config": config,
                            "active_sh_degree": scene.active_sh_degree}
    if isinstance(scene, CompactGaussianScene):
        meta["compact"] = config_to_dict(scene.cfg)
        meta["use_rvq"] = scene.use_rvq
        meta["color_output"] = scene.color_output
    tensors = dict(scene.state_dict())
    if training is not None:
        tensors.update(training[0])
        meta["training"] = training[1]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.json", json.dumps(config, indent=2))
    save_checkpoint(out_dir / CHECKPOINT, tensors, meta)


def load_splat_run(run_dir: str | Path) -> GaussianScene:
    """Re-open the scene of a splat run folder (plain or compact), in eval mode."""
    run_dir = Path(run_dir)
    tensors, meta = load_checkpoint(run_dir / CHECKPOINT)
    return scene_from_checkpoint(tensors, meta, run_dir / CHECKPOINT).eval()


def scene_from_checkpoint(tensors: dict[str, torch.Tensor], meta: dict[str, Any], where: Path) -> GaussianScene:
    """The scene stored in a splat checkpoint's ``(tensors, meta)`` (training mode); ``where`` names the file."""
    if meta.get("method") != "splat":
        raise OmnifieldError(f"{where}: not a splat run (method {meta.get('method')!r})")
    try:
        if "compact" in meta:
            if meta.get("color_output", "sigmoid") != CompactGaussianScene.color_output:
                raise OmnifieldError(f"{where}: written by an older omnifield whose Compact-3DGS colour "
                                     f"field decoded colours differently ({meta.get('color_output', 'sigmoid')}); "
                                     "train the scene again")
            cfg = config_from_dict(meta["compact"], f"{where} compact config")
            if not isinstance(cfg, CompactConfig):
                raise OmnifieldError(f"{where}: bad compact config")
            scene = CompactGaussianScene(tensors["means"], tensors["log_scales"], tensors["quats"],
                                         tensors["opacity_logits"], tensors["aabb"], cfg, tensors["mask_logits"])
            scene.load_state_dict({k: tensors[k] for k in scene.state_dict()})
            scene.use_rvq = bool(meta.get("use_rvq", False))
        else:
            sh = torch.cat([tensors["sh_dc"], tensors["sh_rest"]], dim=1)
            scene = GaussianScene(tensors["means"], tensors["log_scales"], tensors["quats"], tensors["opacity_logits"], sh)
        scene.active_sh_degree = min(int(meta.get("active_sh_degree", scene.max_sh_degree)), scene.max_sh_degree)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise OmnifieldError(f"{where}: incomplete splat checkpoint ({exc})") from None
    return scene
