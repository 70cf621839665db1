"""Checkpoints: one safetensors file holding tensors plus a JSON metadata document.

Nothing is unpickled: tensors come from safetensors, everything else (configs,
step, optimiser hyper-parameters) is JSON stored in the safetensors header under
the key ``omnifield``. Writes are atomic (temp file, fsync, rename), so a crash
never leaves a half-written checkpoint in place of a good one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from omnifield.errors import OmnifieldError
from omnifield.io.atomic import atomic_path

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically write ``tensors`` (name -> tensor) and JSON-able ``meta`` to ``path``."""
    from safetensors.torch import save_file

    payload = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {"omnifield": json.dumps({"format_version": FORMAT_VERSION, **meta})}
    with atomic_path(path) as tmp:
        save_file(payload, str(tmp), metadata=header)


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(tensors, meta)``.

    Raises :class:`OmnifieldError` naming the file when it is missing, truncated or not ours.
    """
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise OmnifieldError(f"{path}: checkpoint not found")
    # One read of the whole file: a run writing its next checkpoint (temp file + rename) meanwhile
    # cannot mix the header of one file with the data of the next, as reopening by name could.
    data = path.read_bytes()
    try:
        header_size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_size]).get("__metadata__") or {}
        tensors = load(data)
    except Exception as exc:  # noqa: BLE001 - safetensors and json raise several types on corrupt files
        raise OmnifieldError(f"{path}: corrupt or truncated checkpoint ({exc})") from None
    if "omnifield" not in header:
        raise OmnifieldError(f"{path}: not an omnifield checkpoint (no 'omnifield' metadata)")
    try:
        meta = json.loads(header["omnifield"])
    except json.JSONDecodeError:
        raise OmnifieldError(f"{path}: checkpoint metadata is not valid JSON") from None
    return tensors, meta


def module_state(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with keys prefixed ``prefix/``."""
    return {f"{prefix}/{k}": v for k, v in module.state_dict().items()}


def load_module_state(prefix: str, module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Load the ``prefix/`` entries into ``module``; a mismatch is an :class:`OmnifieldError` naming ``where``."""
    state = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        hint = ""
        if any("tcnn" in k for k in missing + unexpected):
            hint = ("; one side uses tiny-cuda-nn, whose parameter layout differs from omnifield's: re-open the run "
                    "with the implementation it was trained with (--set field.encoding.implementation=...)")
        raise OmnifieldError(
            f"{where}: checkpoint does not match the {type(module).__name__} architecture "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}){hint}"
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise OmnifieldError(
                f"{where}: tensor {prefix}/{key} has shape {tuple(value.shape)}, "
                f"the architecture expects {tuple(expected[key].shape)}"
            )
    module.load_state_dict(state)


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser's state into tensors (``optim/<param>/<name>``) and JSON (hyper-parameters, scalars)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{pid}/{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = float(value)
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, pid, name = key.split("/", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, values in meta["scalars"].items():
        for name, value in values.items():
            state.setdefault(int(pid), {})[name] = torch.tensor(value)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
