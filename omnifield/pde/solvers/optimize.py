"""Adam (with collocation resampling and exponential learning-rate decay) then L-BFGS: one task of the engine.

:class:`PhysicsTask` runs both phases under :class:`~omnifield.engine.Engine`. Engine step ``k`` below
``adam_steps`` is Adam step ``k``: the task returns the loss and the engine steps Adam. Every later engine
step is one L-BFGS *block* (up to ``lbfgs_block`` iterations on a fixed batch) that the task steps itself,
so the engine's step budget is ``adam_steps`` plus the number of blocks (:func:`lbfgs_plan`), which together
make ``adam_steps + lbfgs_steps`` optimiser steps. Under a time budget that ends first, the engine's progress
moves the schedule: the learning rate decays with it and L-BFGS starts at Adam's share of the optimiser steps.

A checkpoint holds the solution, the phase, the Adam state (the engine's), the L-BFGS memory, the causal
``eps``, the generator and the current collocation batch, so a resumed run continues exactly.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from omnifield.errors import OmnifieldError
from omnifield.io.checkpoint import load_module_state, module_state, save_checkpoint
from omnifield.pde.solvers.loss import PhysicsLoss

HISTORY_EVERY = 10  # Adam steps between history entries (and the last one)


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


def lbfgs_plan(steps: int, block: int, every: int, done: int = 0, since: int = 0) -> list[tuple[int, bool]]:
    """The L-BFGS blocks still to run of ``steps`` iterations, ``done`` of them run, ``since`` on the current
    batch: ``(iterations, fresh batch before it)`` each.

    Blocks hold up to ``block`` iterations and end where the batch is redrawn (every ``every``
    iterations; 0: never), so ``lbfgs_plan(7, 50, 3) == [(3, False), (3, True), (1, True)]``."""
    plan = []
    while done < steps:
        fresh = every > 0 and since >= every
        since = 0 if fresh else since
        size = min(block, steps - done, every - since if every > 0 else block)
        plan.append((size, fresh))
        done, since = done + size, since + size
    return plan


class PhysicsTask:
    """Minimise ``loss`` over ``params`` (parameters or Adam groups ``{"params", "lr"}``, whose rates decay by one
    factor; L-BFGS takes all of them at one step size) as an engine task; ``history`` holds one dict per
    logged step (``step``, ``phase``, loss parts), ``checkpoint`` is where :meth:`write_checkpoint` writes and
    ``identity`` is stored in every checkpoint (what the run is, for a resume to check)."""

    def __init__(self, loss: PhysicsLoss, params: list, settings: OptimizeSettings, generator: torch.Generator,
                 checkpoint: Path | None = None, identity: dict[str, Any] | None = None):
        if settings.lbfgs_block < 1:
            raise OmnifieldError(f"--lbfgs-block must be >= 1, got {settings.lbfgs_block}")
        self.loss, self.settings, self.generator = loss, settings, generator
        self.checkpoint, self.identity = checkpoint, dict(identity or {})
        self.optimizer = torch.optim.Adam(params, lr=settings.lr)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.decay = (settings.lr_final / settings.lr) ** (1.0 / max(settings.adam_steps, 1))
        self.batch = loss.sample(generator)
        self.phase = "adam"
        self.lr_position = 0.0  # Adam steps the learning rate has decayed over
        self.adam_taken = 0  # Adam steps when L-BFGS started
        self.blocks = self.iterations = self.since = 0  # L-BFGS blocks and iterations done, iterations on the batch
        self.finished = False  # a block turned the loss non-finite: undone, the phase ends
        self.lbfgs: torch.optim.LBFGS | None = None
        self.history: list[dict] = []
        self.last: dict[str, float] = {}  # statistics of the last step
        self.planned_steps = self.total_steps  # the budget as planned, which a time budget maps onto

    def _plan(self) -> list[tuple[int, bool]]:
        """The L-BFGS blocks still to run (:func:`lbfgs_plan`)."""
        s = self.settings
        if self.finished:
            return []
        return lbfgs_plan(s.lbfgs_steps, s.lbfgs_block, s.lbfgs_resample_every, self.iterations, self.since)

    @property
    def total_steps(self) -> int:
        """The engine's step budget: the Adam steps and the L-BFGS blocks, run and still to run."""
        taken = self.adam_taken + self.blocks if self.phase == "lbfgs" else self.settings.adam_steps
        return taken + len(self._plan())

    # ------------------------------------------------------------------ engine
    def training_step(self, step: int, progress: float) -> tuple[torch.Tensor | None, dict[str, float]]:
        """Adam step ``step`` (returns the loss), or one L-BFGS block (steps itself, returns ``None``)."""
        if self.phase == "adam":
            position = self._adam_position(step, progress)
            if position < self.settings.adam_steps:
                return self._adam_step(step, position)
            if not self._plan():
                return None, self.last
            self._start_lbfgs(step)
        plan = self._plan()
        return None, self._lbfgs_block(*plan[0]) if plan else self.last

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Solution, generator, batch and L-BFGS memory; the phase, counters, causal ``eps`` and history."""
        tensors = {"rng/generator": self.generator.get_state(), **module_state("solution", self.loss.solution)}
        tensors.update({f"batch/{k}": v for k, v in self.batch.items()})
        lbfgs_tensors, lbfgs_meta = _lbfgs_state(self.lbfgs) if self.lbfgs is not None else ({}, {})
        tensors.update(lbfgs_tensors)
        causal = self.loss.causal
        meta = {**self.identity, "phase": self.phase, "lr_position": self.lr_position, "adam_taken": self.adam_taken,
                "blocks": self.blocks, "iterations": self.iterations, "since": self.since, "finished": self.finished,
                "lbfgs": lbfgs_meta,
                "causal_index": causal.index if causal is not None else 0, "history": self.history, "last": self.last}
        return tensors, meta

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Continue from :meth:`state` (the engine has restored Adam, the step and the torch RNG)."""
        where = str(self.checkpoint or "checkpoint")
        try:
            if meta["phase"] == "lbfgs":
                self._to_lbfgs_precision()
                self.lbfgs = self._new_lbfgs()
                _load_lbfgs_state(self.lbfgs, tensors, meta["lbfgs"])
            load_module_state("solution", self.loss.solution, tensors, where)
            self.generator.set_state(tensors["rng/generator"])
            self.batch = {k[len("batch/"):]: v for k, v in tensors.items() if k.startswith("batch/")}
            self.phase, self.lr_position, self.adam_taken = meta["phase"], meta["lr_position"], meta["adam_taken"]
            self.blocks, self.iterations, self.since = meta["blocks"], meta["iterations"], meta["since"]
            self.finished = meta["finished"]
            self.history, self.last = list(meta["history"]), dict(meta["last"])
            if self.loss.causal is not None:
                self.loss.causal.index = int(meta["causal_index"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise OmnifieldError(f"{where}: not a usable PDE solver checkpoint ({exc})") from None

    def write_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Store the engine's checkpoint atomically at ``checkpoint`` (nowhere when it is ``None``)."""
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, tensors, meta)

    # -------------------------------------------------------------------- Adam
    def _adam_position(self, step: int, progress: float) -> float:
        """Adam steps of the schedule done: ``step``, or more when the time budget runs ahead of the steps; the
        time is then shared by optimiser steps (Adam's part of ``adam_steps + lbfgs_steps``)."""
        if progress * self.planned_steps < step + 0.5:
            return float(step)
        return max(float(step), progress * (self.settings.adam_steps + self.settings.lbfgs_steps))

    def _adam_step(self, step: int, position: float) -> tuple[torch.Tensor, dict[str, float]]:
        loss, s = self.loss, self.settings
        if step and step % s.resample_every == 0:
            self.batch = loss.sample(self.generator)
        if position > self.lr_position:  # exponential decay: lr_final at the end of the Adam phase
            factor = self.decay ** (position - self.lr_position)
            for group in self.optimizer.param_groups:
                group["lr"] *= factor
            self.lr_position = position
        total, parts = loss(self.batch)
        if loss.causal is not None and loss.last_weights is not None:
            loss.causal.update(loss.last_weights)  # takes effect at the next step's loss
        if step % HISTORY_EVERY == 0 or step == s.adam_steps - 1:
            self.history.append({"step": step, "phase": "adam", **parts})
        self.last = parts
        return total, parts

    # ------------------------------------------------------------------ L-BFGS
    def _to_lbfgs_precision(self) -> None:
        s, loss = self.settings, self.loss
        if s.lbfgs_dtype is not None and s.lbfgs_dtype != loss.dtype:
            loss.solution.to(s.lbfgs_dtype)  # in place: the Parameter objects (and the optimisers') stay
            loss.dtype = s.lbfgs_dtype
        if s.lbfgs_points > 0:
            loss.n_interior = s.lbfgs_points

    def _new_lbfgs(self) -> torch.optim.LBFGS:
        return torch.optim.LBFGS(self.params, lr=1.0, max_iter=self.settings.lbfgs_block, history_size=50,
                                 tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def _start_lbfgs(self, step: int) -> None:
        self.phase, self.adam_taken = "lbfgs", step
        self._to_lbfgs_precision()
        self.batch = self.loss.sample(self.generator)
        self.lbfgs = self._new_lbfgs()

    def _lbfgs_block(self, size: int, fresh: bool) -> dict[str, float]:
        """One L-BFGS block (strong Wolfe) of ``size`` iterations on the fixed batch (a ``fresh`` one first); a
        block that turns the loss non-finite is undone and ends the phase.

        With ``lbfgs_resample_every`` the batch is redrawn (and the curvature memory dropped) every that
        many iterations, so that a long run does not over-fit one set of collocation points.

        Causal training: within a block the causal weights are held at their value at the block's start
        (so that the line search sees one objective); between blocks they are recomputed and the ``eps``
        schedule advances as during Adam."""
        loss, lbfgs = self.loss, self.lbfgs
        if fresh:
            self.batch = loss.sample(self.generator)
            lbfgs = self.lbfgs = self._new_lbfgs()
            self.since = 0
        batch, last = self.batch, {}

        def closure():
            lbfgs.zero_grad(set_to_none=True)
            total, parts = loss(batch)
            total.backward()
            last.update(parts)
            return total

        saved = [p.detach().clone() for p in self.params]
        saved_state = copy.deepcopy(lbfgs.state_dict())
        lbfgs.param_groups[0]["max_iter"] = size
        if loss.causal is not None:
            loss.frozen_weights = None
            loss(batch)  # current weights at the current eps
            loss.frozen_weights = loss.last_weights
        lbfgs.step(closure)
        if not math.isfinite(last.get("loss", math.nan)):
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)
            lbfgs.load_state_dict(saved_state)
            loss.frozen_weights = None
            self.finished = True
            return self.last
        self.blocks += 1
        self.iterations += size
        self.since += size
        if loss.causal is not None:
            loss.frozen_weights = None
            loss(batch)
            eps = loss.causal.eps
            loss.causal.update(loss.last_weights)
            if loss.causal.eps != eps:
                self.lbfgs = self._new_lbfgs()  # a new objective: drop the curvature pairs of the old one
            last.update(min_weight=float(loss.last_weights.min()), eps=loss.causal.eps)
        self.history.append({"step": self.adam_taken + self.iterations, "phase": "lbfgs", **last})
        self.last = last
        return last


def _lbfgs_state(lbfgs: torch.optim.LBFGS) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """L-BFGS memory as tensors (``lbfgs/<name>``, ``lbfgs/<name>/<i>`` for lists) and JSON (numbers, list layout)."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    for name, value in lbfgs.state_dict()["state"].get(0, {}).items():
        if isinstance(value, torch.Tensor):
            tensors[f"lbfgs/{name}"], meta[name] = value, "tensor"
        elif isinstance(value, list):
            meta[name] = ["tensor" if isinstance(v, torch.Tensor) else v for v in value]
            tensors.update({f"lbfgs/{name}/{i}": v for i, v in enumerate(value) if isinstance(v, torch.Tensor)})
        else:
            meta[name] = value
    return tensors, meta


def _load_lbfgs_state(lbfgs: torch.optim.LBFGS, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`_lbfgs_state`."""
    state: dict[str, Any] = {}
    for name, value in meta.items():
        if value == "tensor":
            state[name] = tensors[f"lbfgs/{name}"]
        elif isinstance(value, list):
            state[name] = [tensors[f"lbfgs/{name}/{i}"] if v == "tensor" else v for i, v in enumerate(value)]
        else:
            state[name] = value
    lbfgs.load_state_dict({"state": {0: state} if state else {}, "param_groups": lbfgs.state_dict()["param_groups"]})
