"""Adam (with collocation resampling and exponential learning-rate decay) then L-BFGS, with a progress bar."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from omnifield.pde.solvers.loss import PhysicsLoss


@dataclass
class OptimizeSettings:
    """Optimiser schedule."""

    adam_steps: int = 2000
    lbfgs_steps: int = 0
    lr: float = 1e-3
    lr_final: float = 1e-4
    resample_every: int = 100
    lbfgs_block: int = 50
    lbfgs_dtype: torch.dtype | None = None  # convert the solution (and the batches) to it before L-BFGS
    lbfgs_points: int = 0  # collocation points of the L-BFGS batch (0: the Adam batch size)
    lbfgs_resample_every: int = 0  # L-BFGS iterations between fresh batches (0: one batch throughout)
    quiet: bool = False


def optimize(loss: PhysicsLoss, params: list, settings: OptimizeSettings,
             generator: torch.Generator) -> list[dict]:
    """Minimise ``loss``; returns the history, one dict per logged step (``step``, ``phase``, loss parts).

    ``params`` are parameters or Adam parameter groups (``{"params", "lr"}``; their rates decay by the
    same factor, ``settings.lr`` is then the reference rate); L-BFGS takes all of them at one step size."""
    history: list[dict] = []
    bar = tqdm(total=settings.adam_steps + settings.lbfgs_steps, disable=settings.quiet, desc="pde", leave=False)
    adam = torch.optim.Adam(params, lr=settings.lr)
    if params and isinstance(params[0], dict):
        params = [p for group in params for p in group["params"]]
    decay = (settings.lr_final / settings.lr) ** (1.0 / max(settings.adam_steps, 1))
    batch = loss.sample(generator)
    for step in range(settings.adam_steps):
        if step and step % settings.resample_every == 0:
            batch = loss.sample(generator)
        adam.zero_grad(set_to_none=True)
        total, parts = loss(batch)
        total.backward()
        adam.step()
        for group in adam.param_groups:
            group["lr"] *= decay
        if loss.causal is not None and loss.last_weights is not None:
            loss.causal.update(loss.last_weights)
        if step % 10 == 0 or step == settings.adam_steps - 1:
            history.append({"step": step, "phase": "adam", **parts})
            bar.set_postfix(loss=f"{parts['loss']:.2e}")
        bar.update(1)
    if settings.lbfgs_steps > 0:
        if settings.lbfgs_dtype is not None and settings.lbfgs_dtype != loss.dtype:
            loss.solution.to(settings.lbfgs_dtype)  # in place: the Parameter objects (and ``params``) stay
            loss.dtype = settings.lbfgs_dtype
        if settings.lbfgs_points > 0:
            loss.n_interior = settings.lbfgs_points
        _lbfgs(loss, params, settings, generator, history, bar)
    bar.close()
    return history


def _lbfgs(loss, params, settings, generator, history, bar) -> None:
    """L-BFGS (strong Wolfe) on a fixed batch, in blocks; a block that turns the loss non-finite is undone.

    With ``lbfgs_resample_every`` the batch is redrawn (and the curvature memory dropped) every that
    many iterations, so that a long run does not over-fit one set of collocation points.

    Causal training: within a block the causal weights are held at their value at the block's start
    (so that the line search sees one objective); between blocks they are recomputed and the ``eps``
    schedule advances as during Adam."""
    def new_lbfgs():
        return torch.optim.LBFGS(params, lr=1.0, max_iter=settings.lbfgs_block, history_size=50,
                                 tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe")

    lbfgs = new_lbfgs()
    batch = loss.sample(generator)
    last: dict = {}

    def closure():
        lbfgs.zero_grad(set_to_none=True)
        total, parts = loss(batch)
        total.backward()
        last.update(parts)
        return total

    step0 = settings.adam_steps
    done = 0
    every, since = settings.lbfgs_resample_every, 0  # since: iterations on the current batch
    while done < settings.lbfgs_steps:
        if every > 0 and since >= every:
            batch, since = loss.sample(generator), 0
            lbfgs = new_lbfgs()
        saved = [p.detach().clone() for p in params]
        saved_state = copy.deepcopy(lbfgs.state_dict())
        cap = every - since if every > 0 else settings.lbfgs_block
        block = min(settings.lbfgs_block, settings.lbfgs_steps - done, cap)
        lbfgs.param_groups[0]["max_iter"] = block
        if loss.causal is not None:
            loss.frozen_weights = None
            loss(batch)  # current weights at the current eps
            loss.frozen_weights = loss.last_weights
        lbfgs.step(closure)
        if not math.isfinite(last.get("loss", math.nan)):
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)
            lbfgs.load_state_dict(saved_state)
            loss.frozen_weights = None
            break
        done += block
        since += block
        if loss.causal is not None:
            loss.frozen_weights = None
            loss(batch)
            eps = loss.causal.eps
            loss.causal.update(loss.last_weights)
            if loss.causal.eps != eps:
                lbfgs = new_lbfgs()  # a new objective: drop the curvature pairs of the old one
            last.update(min_weight=float(loss.last_weights.min()), eps=loss.causal.eps)
        history.append({"step": step0 + done, "phase": "lbfgs", **last})
        bar.set_postfix(loss=f"{last['loss']:.2e}")
        bar.update(block)
