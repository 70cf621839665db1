"""What a solve writes: the solution on the reference grid (npz), solution/error plots and loss curves (PNG).

Every file is written to a temporary name in the output folder and renamed into place.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from omnifield.io.atomic import atomic_path
from omnifield.pde.problem import Problem, ReferenceGrid, relative_l2


def _write(path: Path, write) -> None:
    """``write(tmp)`` to a temporary file that then replaces ``path`` (:func:`~omnifield.io.atomic.atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)


@torch.no_grad()
def predict_on_grid(solution: torch.nn.Module, reference: ReferenceGrid, chunk: int = 16384) -> np.ndarray:
    """``solution`` evaluated at every reference grid point -> ``[*grid, O]`` (float64)."""
    pts = torch.from_numpy(reference.points())
    dtype = next(solution.parameters()).dtype
    out = [solution(p.to(dtype)).double() for p in pts.split(chunk)]
    shape = tuple(len(a) for a in reference.axes)
    return torch.cat(out).numpy().reshape(*shape, -1)


def _plot_slice(values: np.ndarray) -> np.ndarray:
    """A 2-D image of the first output (the last time slice for 3-D inputs)."""
    v = values[..., 0]
    while v.ndim > 2:
        v = v[..., -1]
    return v


def write_outputs(problem: Problem, solution: torch.nn.Module, history: list[dict], out_dir: Path,
                  metrics: dict) -> dict:
    """Write ``solution.npz``, ``solution.png``, ``loss.png``, ``metrics.json``; returns metrics + ``rel_l2``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    reference = problem.reference()
    pred = predict_on_grid(solution, reference)
    metrics = {"rel_l2": relative_l2(pred, reference), **metrics}
    mask = np.ones(pred.shape[:-1], bool) if reference.mask is None else reference.mask
    error = np.where(mask[..., None], np.abs(pred - reference.values), np.nan)

    arrays = {f"axis_{n}": a for n, a in zip(problem.input_names, reference.axes)}
    arrays.update(prediction=pred, reference=reference.values, abs_error=error, mask=mask)
    _write(out_dir / "solution.npz", lambda p: np.savez_compressed(p, **arrays))

    shown = [("prediction", pred), ("reference", reference.values), ("|error|", error)]
    extent = [*reference.axes[1][[0, -1]], *reference.axes[0][[0, -1]]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (title, values) in zip(axes, shown):
        img = _plot_slice(np.where(mask[..., None], values, np.nan))
        im = ax.imshow(img, origin="lower", aspect="auto", extent=extent, cmap="viridis" if title == "|error|" else "RdBu_r")
        ax.set_xlabel(problem.input_names[1])
        ax.set_ylabel(problem.input_names[0])
        ax.set_title(f"{problem.name}: {title}")
        fig.colorbar(im, ax=ax)
    fig.suptitle(f"relative L2 = {metrics['rel_l2']:.3e}")
    fig.tight_layout()
    _write(out_dir / "solution.png", lambda p: fig.savefig(p, dpi=100))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    keys = [k for k in (history[0] if history else {}) if k not in ("step", "phase", "eps", "min_weight")]
    for key in keys:
        ax.semilogy([h["step"] for h in history], [max(h.get(key, np.nan), 1e-30) for h in history], label=key)
    ax.set_xlabel("step (Adam, then L-BFGS iterations)")
    if keys:
        ax.legend()
    fig.tight_layout()
    _write(out_dir / "loss.png", lambda p: fig.savefig(p, dpi=100))
    plt.close(fig)

    _write(out_dir / "loss_history.json", lambda p: p.write_text(json.dumps(history)))
    _write(out_dir / "metrics.json", lambda p: p.write_text(json.dumps(metrics, indent=2)))
    return metrics
