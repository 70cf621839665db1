"""Checkpoints: one safetensors file holding tensors plus a JSON metadata document.

Nothing is unpickled: tensors come from safetensors, everything else (configs,
step, optimiser hyper-parameters) is JSON stored in the safetensors header under
the key ``omnifield``. Writes are atomic (temp file, fsync, rename), so a crash
never leaves a half-written checkpoint in place of a good one. The header also holds a
BLAKE2b digest of the tensor data and of the rest of the header (key ``omnifield_blake2b``), checked on
every load, so a flipped bit is a clear error instead of silently wrong weights; files without it (older
ones) still load.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from omnifield.errors import OmnifieldError
from omnifield.io import atomic
from omnifield.io.atomic import write_bytes_atomic

FORMAT_VERSION = 1
CHECKSUM_KEY = "omnifield_blake2b"
# what safetensors' own writer (before omnifield wrote the bytes itself) left when killed: ``.tmp`` + 6 characters
_LEGACY_TEMPORARY = re.compile(r"\.tmp[A-Za-z0-9]{6}")


def _digest(header: dict[str, Any], data: bytes | memoryview) -> str:
    """BLAKE2b of the header (without the digest itself, keys sorted) and the data section."""
    rest = {**header, "__metadata__": {k: v for k, v in (header.get("__metadata__") or {}).items() if k != CHECKSUM_KEY}}
    h = hashlib.blake2b(json.dumps(rest, sort_keys=True).encode(), digest_size=16)
    h.update(data)
    return h.hexdigest()


def _split(data: bytes | memoryview) -> tuple[dict[str, Any], memoryview]:
    """A safetensors file's ``(header JSON, data section)``; ``ValueError`` if the header is damaged."""
    view = memoryview(data)
    if len(view) < 8:
        raise ValueError("shorter than a safetensors header")
    size = int.from_bytes(view[:8], "little")
    if size > len(view) - 8:
        raise ValueError(f"header length {size} is past the end of the file")
    try:
        header = json.loads(bytes(view[8:8 + size]))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("header is not valid JSON") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header, view[8 + size:]


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically write ``tensors`` (name -> tensor) and JSON-able ``meta`` to ``path``, with a data checksum.

    The bytes are serialised in memory and written through :func:`~omnifield.io.atomic.write_bytes_atomic`, so
    the only temporary file is ours (removed by :func:`remove_stale_temporaries` after a kill).
    """
    from safetensors.torch import save

    payload = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    blob = save(payload, metadata={"omnifield": json.dumps({"format_version": FORMAT_VERSION, **meta})})
    header, data = _split(blob)
    header["__metadata__"][CHECKSUM_KEY] = _digest(header, data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # safetensors keeps the data section 8-byte aligned
    write_bytes_atomic(path, len(head).to_bytes(8, "little"), head, data)


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(tensors, meta)``.

    Raises :class:`OmnifieldError` naming the file when it is missing, truncated, corrupt (checksum
    mismatch) or not ours.
    """
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise OmnifieldError(f"{path}: checkpoint not found")
    # One read of the whole file: a run writing its next checkpoint (temp file + rename) meanwhile
    # cannot mix the header of one file with the data of the next, as reopening by name could.
    data = path.read_bytes()
    try:
        header, section = _split(data)
        tensors = load(data)
    except Exception as exc:  # noqa: BLE001 - safetensors and json raise several types on corrupt files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OmnifieldError(f"{path} is corrupt or truncated ({first})") from None
    metadata = header.get("__metadata__") or {}
    if CHECKSUM_KEY in metadata and metadata[CHECKSUM_KEY] != _digest(header, section):
        raise OmnifieldError(f"{path} is corrupt: checksum mismatch (its bytes changed after it was written; "
                             "use an earlier copy)")
    if "omnifield" not in metadata:
        raise OmnifieldError(f"{path}: not an omnifield checkpoint (no 'omnifield' metadata)")
    try:
        meta = json.loads(metadata["omnifield"])
    except json.JSONDecodeError:
        raise OmnifieldError(f"{path}: checkpoint metadata is not valid JSON") from None
    return tensors, meta


def _is_legacy_temporary(candidate: Path) -> bool:
    """Whether ``candidate`` is a killed safetensors write of an omnifield checkpoint (name and header both)."""
    if not (_LEGACY_TEMPORARY.fullmatch(candidate.name) and candidate.is_file()):
        return False
    with open(candidate, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        head = fh.read(min(size, 1 << 24))
    return head.startswith(b"{") and b'"omnifield"' in head


def remove_stale_temporaries(path: str | Path) -> int:
    """Delete what an interrupted :func:`save_checkpoint` of ``path`` left in its folder; returns how many.

    That is the temporary files of :func:`~omnifield.io.atomic.atomic_path`, and the ``.tmpXXXXXX`` files
    that earlier versions (safetensors' own writer) left, recognised by name and by an omnifield header.
    Nothing else is touched. Only call it while no other process writes ``path``.
    """
    path = Path(path)
    removed = atomic.remove_stale_temporaries(path)
    for candidate in path.parent.glob(".tmp*"):
        if _is_legacy_temporary(candidate):
            candidate.unlink(missing_ok=True)
            removed += 1
    return removed


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
