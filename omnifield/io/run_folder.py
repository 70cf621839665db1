"""What an output folder already holds, so no command overwrites a run of another kind.

Every command that writes a run or model folder first calls :func:`claim_output`: a folder holding
a run of another kind or method (a hash-grid NeRF run under a splat ``--out``, an MAE model under a
segmenter's) is refused, naming both; one holding a run of the same kind is refused too unless the
command continues or refreshes it (``continues=True``: ``train --resume``, a PDE re-solve).
"""

from __future__ import annotations

import json
from pathlib import Path

from omnifield.errors import OmnifieldError

CHECKPOINT = "checkpoint.safetensors"
MAE_MODEL = "model.safetensors"
NAV_FIELD = "learned_field.safetensors"
PDE_SOLUTION = "solution.npz"
NAV_GRID = "grid.npz"


def checkpoint_meta(path: Path) -> dict | None:
    """The JSON metadata of an omnifield checkpoint, read from its header alone; None when unreadable."""
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size < 1 << 26:
                return None
            header = json.loads(fh.read(size)).get("__metadata__") or {}
        meta = json.loads(header["omnifield"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return meta if isinstance(meta, dict) else None


def _checkpoint_kind(meta: dict | None) -> str:
    if meta is None:
        return "run with an unreadable checkpoint"
    if meta.get("method") == "splat":
        return "splat run"
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    if "renderer" in config or "train" in config:
        return f"{config.get('method', '?')} NeRF run"
    fit = config.get("fit") if isinstance(config.get("fit"), dict) else {}
    if str(fit.get("type", "")).startswith("fit_"):
        return f"{fit['type'][4:]} fit"
    return "run of an unknown kind"


def describe_output(folder: str | Path) -> str | None:
    """The kind of run ``folder`` holds (``'hashgrid NeRF run'``, ``'splat run'``, ``'image fit'``,
    ``'mae model'``, ``'PDE solution'``, ``'navigation output'``), or None when it holds none."""
    folder = Path(folder)
    if (folder / CHECKPOINT).is_file():
        return _checkpoint_kind(checkpoint_meta(folder / CHECKPOINT))
    if (folder / MAE_MODEL).is_file():
        meta = checkpoint_meta(folder / MAE_MODEL) or {}
        return f"{meta.get('kind', 'unknown')} model"
    if (folder / PDE_SOLUTION).is_file():
        return "PDE solution"
    if (folder / NAV_FIELD).is_file() or (folder / NAV_GRID).is_file():
        return "navigation output"
    return None


def claim_output(folder: str | Path, kind: str, continues: bool = False, option: str = "--out",
                 hint: str = "") -> None:
    """Refuse (:class:`OmnifieldError`) to write a ``kind`` run into ``folder`` when it holds another run.

    A run of the same kind is accepted only when ``continues`` (the command resumes or refreshes it);
    ``hint`` says how to continue one (``'pass --resume to continue it'``).
    """
    if Path(folder).exists() and not Path(folder).is_dir():
        raise OmnifieldError(f"{folder}: {option} must be a folder, and this is a file")
    found = describe_output(folder)
    if found is None or (found == kind and continues):
        return
    if found == kind:
        raise OmnifieldError(f"{folder}: already holds a run ({found}); {hint + ' or ' if hint else ''}"
                             f"choose another {option}")
    raise OmnifieldError(f"{folder} holds {_a(found)}; refusing to write {_a(kind)} there (use another {option})")


def _a(noun: str) -> str:
    """``noun`` with its article, spoken as read: "an image fit", "an mlp NeRF run", "an MAE model"."""
    word = noun.split()[0]
    spelled = word.isupper() or not any(c in "aeiou" for c in word.lower())  # an acronym, read letter by letter
    vowel_sound = word[0].lower() in "aeiou" or (spelled and word[0].lower() in "fhlmnrsx")
    return f"{'an' if vowel_sound else 'a'} {noun}"
