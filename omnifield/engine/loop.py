"""The one training loop: budget, progress bar, log, evaluation schedule, checkpoints, resume, Ctrl-C.

A *task* (radiance field, splats, conversion, PDE solve, ...) supplies only what is its own — one
optimisation step, its state, its evaluation and where its checkpoint goes — and :class:`Engine`
does the rest, the same way for every task:

- **budget**: ``steps`` and/or ``minutes`` of training time, whichever ends first. The first step of
  a process compiles native kernels (a minute on a fresh install) and evaluation can take long:
  neither counts against the budget. ``progress = max(step / steps, elapsed / budget)`` drives the
  task's schedules, so a time-bound run follows the same schedule as a step-bound one.
- **optimisation**: when the step returns a loss tensor, the engine checks it is finite, then runs
  ``zero_grad``, ``backward``, the task's ``after_backward`` hook, gradient clipping (``grad_clip``)
  and ``optimizer.step()``. A task that steps itself (L-BFGS with its closure) returns no tensor.
- **divergence**: a non-finite loss stops the run with one line; nothing is written after it, so the
  last good checkpoint stays.
- **checkpoints** every ``checkpoint_every_s`` seconds, at the end and on Ctrl-C (then
  ``KeyboardInterrupt`` propagates: the CLI exits 130). A first Ctrl-C is held until the step ends
  (:mod:`omnifield.engine.interrupts`: never lost), a second one interrupts the step. The engine
  stores the step, the training time, the torch RNG and the optimiser state beside the task's own
  tensors; :meth:`Engine.restore` continues a run exactly.
- **log**: ``log.jsonl`` gets the step's statistics every ``log_every`` steps (and at step 1) and each
  evaluation; the progress bar shows them; ``curves.png`` beside the log plots loss and PSNR against
  time when the run ends or is interrupted; with ``tensorboard`` the same records go to TensorBoard
  event files in ``tensorboard/`` beside the log.
- **between steps**: callables in ``between_steps`` run after each step, off the training clock (the
  live viewer renders there).
- **data parallel**: under torchrun the ranks agree on the clock (so they stop at the same step) and
  rank 0 alone writes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, runtime_checkable

import torch
from tqdm import tqdm

from omnifield.config import register_config
from omnifield.distributed import ProcessGroup, current, sum_over_ranks
from omnifield.engine.curves import TensorBoardLog, write_curves
from omnifield.engine.interrupts import held_interrupts
from omnifield.errors import OmnifieldError
from omnifield.io.checkpoint import load_optimizer_state, optimizer_state


@register_config("loop")
@dataclass
class LoopConfig:
    """How long and how a task trains (0 disables a limit; at least one of ``steps``/``minutes`` is set)."""

    steps: int = 0
    minutes: float = 0.0
    log_every: int = 100
    checkpoint_every_s: float = 60.0
    eval_every: int = 0
    eval_at_seconds: tuple[float, ...] = ()
    grad_clip: float = 0.0
    progress: bool = True
    tensorboard: bool = False

    def check(self) -> None:
        """Refuse a budget that cannot end or cannot start (NaN included)."""
        if not (self.steps >= 0 and self.minutes >= 0 and math.isfinite(self.minutes)):
            raise OmnifieldError(f"the budget must be >= 0 steps and finite minutes >= 0, got steps={self.steps}, "
                                 f"minutes={self.minutes}")
        if self.steps == 0 and self.minutes == 0:
            raise OmnifieldError("--steps or --minutes must be positive")
        if not (self.grad_clip >= 0 and self.log_every >= 1 and self.checkpoint_every_s >= 0):
            raise OmnifieldError("grad_clip must be >= 0, log_every >= 1 and checkpoint_every_s >= 0")


@runtime_checkable
class Task(Protocol):
    """What a task gives the engine.

    ``training_step(step, progress)`` returns ``(loss, stats)``: ``loss`` a scalar tensor for the engine
    to back-propagate into ``optimizer`` (``None`` when the step optimised by itself), ``stats`` floats
    to log — ``stats["loss"]`` is checked for divergence (under torchrun it must be the value agreed by
    all ranks). ``state()`` / ``restore()`` carry everything else the task needs to continue exactly
    (its generators, schedules, buffers); ``write_checkpoint(tensors, meta)`` stores a checkpoint
    atomically where the task keeps its run.

    Optional methods, used when present: ``after_backward(step) -> dict`` (between backward and the
    optimiser step, e.g. density control), ``evaluate(step) -> dict`` (held-out metrics),
    ``clip_parameters() -> iterable`` (what ``grad_clip`` clips; default: the optimiser's parameters),
    ``counters`` (names of per-step counts in ``stats``, e.g. ``("rays",)``: the log reports each as a
    rate, ``rays_per_s``, over the steps since the last log line).
    """

    optimizer: torch.optim.Optimizer | None

    def training_step(self, step: int, progress: float) -> tuple[torch.Tensor | None, dict[str, float]]: ...

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]: ...

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None: ...

    def write_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None: ...


class EngineTask:
    """For tasks that own their engine as ``self.engine``: ``step`` and ``elapsed`` (training seconds,
    the first step and evaluations not counted) read from it."""

    engine: "Engine"

    @property
    def step(self) -> int:
        return self.engine.step

    @property
    def elapsed(self) -> float:
        return self.engine.elapsed


class Engine:
    """Runs ``task`` under ``cfg``; ``log_path`` (optional) receives ``log.jsonl`` lines.

    ``postfix`` names the statistics shown on the progress bar (default: every float the step returns,
    up to six). ``where`` names the run in messages. ``run()`` returns the evaluation history, one dict per
    evaluation.
    """

    def __init__(self, task: Task, cfg: LoopConfig, log_path: Path | None = None, description: str = "train",
                 postfix: tuple[str, ...] | None = None, group: ProcessGroup | None = None, where: str = ""):
        cfg.check()
        self.where = f" in {where}" if where else ""
        self.task, self.cfg, self.log_path = task, cfg, log_path
        self.description, self.postfix = description, postfix
        self.group = group if group is not None else current()
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict[str, Any]] = []
        self.between_steps: list[Callable[[], None]] = []  # called after each step, off the training clock
        self._eval_at = sorted(cfg.eval_at_seconds)

    # ------------------------------------------------------------------ state
    @property
    def progress(self) -> float:
        """Fraction of the budget used: ``max(step / steps, elapsed / (60 * minutes))``."""
        cfg = self.cfg
        by_steps = self.step / cfg.steps if cfg.steps > 0 else 0.0
        by_time = self.elapsed / (cfg.minutes * 60.0) if cfg.minutes > 0 else 0.0
        return max(by_steps, by_time)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The whole checkpoint: the task's state plus step, training time, torch RNG and optimiser."""
        tensors, meta = self.task.state()
        tensors = {**tensors, "rng/torch": torch.get_rng_state()}
        meta = {**meta, "step": self.step, "elapsed": self.elapsed}
        optimizer = getattr(self.task, "optimizer", None)
        if optimizer is not None:
            optim_tensors, meta["optimizer"] = optimizer_state(optimizer)
            tensors.update(optim_tensors)
        return tensors, meta

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], where: str = "checkpoint") -> None:
        """Continue from a checkpoint written by this engine (``where`` names it in errors)."""
        try:
            self.step, self.elapsed = int(meta["step"]), float(meta["elapsed"])
            torch.set_rng_state(tensors["rng/torch"])
            optimizer = getattr(self.task, "optimizer", None)
            if optimizer is not None:
                load_optimizer_state(optimizer, tensors, meta["optimizer"])
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise OmnifieldError(f"{where}: checkpoint lacks a usable training state ({exc})") from None
        self.task.restore(tensors, meta)

    def save(self) -> None:
        """Write a checkpoint now (rank 0 only under torchrun)."""
        if self.group.is_main:
            tensors, meta = self.state()
            self.task.write_checkpoint(tensors, meta)

    # ------------------------------------------------------------------- loop
    def done(self) -> bool:
        """Whether the budget is spent."""
        return self.progress >= 1.0

    def _optimise(self, loss: torch.Tensor) -> dict[str, float]:
        task, optimizer = self.task, self.task.optimizer
        if optimizer is None:
            raise TypeError(f"{type(task).__name__} returned a loss but has no optimizer")
        optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:  # a step with nothing to learn (every ray empty) leaves the parameters alone
            loss.backward()
        extra = task.after_backward(self.step) if hasattr(task, "after_backward") else {}
        if self.cfg.grad_clip > 0:
            params = task.clip_parameters() if hasattr(task, "clip_parameters") else _parameters_of(optimizer)
            torch.nn.utils.clip_grad_norm_(list(params), self.cfg.grad_clip)
        optimizer.step()
        return extra or {}

    def step_once(self) -> dict[str, float]:
        """One step of the task (and of its optimiser) without advancing the counters; returns its statistics."""
        loss, stats = self.task.training_step(self.step, self.progress)
        if not math.isfinite(float(stats.get("loss", 0.0))):
            raise OmnifieldError(f"training diverged at step {self.step} (loss is {stats['loss']}); the last good "
                                 f"checkpoint{self.where} is kept — lower the learning rate (--lr) or clip gradients (--grad-clip)")
        if loss is not None:
            stats.update(self._optimise(loss))
        return stats

    def _eval_due(self) -> bool:
        if not hasattr(self.task, "evaluate"):
            return False
        due = bool(self.cfg.eval_every) and self.step % self.cfg.eval_every == 0
        while self._eval_at and self.elapsed >= self._eval_at[0]:
            self._eval_at.pop(0)
            due = True
        return due

    def _bar(self) -> tqdm:
        timed = self.cfg.minutes > 0
        total = self.cfg.minutes * 60.0 if timed else self.cfg.steps
        return tqdm(total=total, initial=self.elapsed if timed else self.step, desc=self.description,
                    disable=not (self.cfg.progress and self.group.is_main), unit="s" if timed else "step",
                    dynamic_ncols=True,
                    bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s [{elapsed}<{remaining}{postfix}]" if timed else None)

    def _show(self, bar: tqdm, stats: dict[str, Any]) -> None:
        keys = self.postfix or [k for k, v in stats.items() if isinstance(v, float) and k != "elapsed"][:6]
        bar.set_postfix({k: f"{stats[k]:.4g}" for k in keys if k in stats}, refresh=False)

    def run(self) -> list[dict[str, Any]]:
        """Train until the budget is spent; checkpoints periodically, at the end and on Ctrl-C."""
        cfg = self.cfg
        writes = self.log_path is not None and self.group.is_main
        log = open(self.log_path, "a") if writes else None
        board = TensorBoardLog(self.log_path.parent / "tensorboard") if writes and cfg.tensorboard else None
        bar = self._bar()

        def record(entry: dict[str, Any]) -> None:
            if log:
                log.write(json.dumps(entry) + "\n")
                log.flush()
            if board:
                board.write(entry)

        last_checkpoint, first = time.perf_counter(), True
        counters = tuple(getattr(self.task, "counters", ()))
        counted, window_start = dict.fromkeys(counters, 0.0), time.perf_counter()
        try:
            with held_interrupts() as interrupted:
                while not self.done():
                    t0 = time.perf_counter()
                    stats = self.step_once()
                    dt = 0.0 if first else time.perf_counter() - t0  # the first step compiles kernels: not counted
                    first = False
                    stop = interrupted()
                    if self.group.active:  # every rank must see the same clock and Ctrl-C to stop at the same step
                        clock, stops = sum_over_ranks([self.elapsed + dt, float(stop)], self.group)
                        dt, stop = clock / self.group.world_size - self.elapsed, stops > 0
                    self.elapsed += dt
                    self.step += 1
                    for call in self.between_steps:
                        call()
                    for name in counters:
                        counted[name] += stats.get(name, 0.0)
                    bar.update(max(0.0, min(dt, cfg.minutes * 60.0 - bar.n)) if cfg.minutes > 0 else 1)
                    if self.step % cfg.log_every == 0 or self.step == 1:
                        entry = {"step": self.step, "elapsed": round(self.elapsed, 3), **stats}
                        now = time.perf_counter()
                        entry.update({f"{name}_per_s": counted[name] / max(now - window_start, 1e-9)
                                      for name in counters})
                        counted, window_start = dict.fromkeys(counters, 0.0), now
                        self._show(bar, entry)
                        record(entry)
                    if stop:  # Ctrl-C during this step: the checkpoint below holds it
                        raise KeyboardInterrupt
                    if self._eval_due():
                        entry = {"step": self.step, "elapsed": self.elapsed, **self.task.evaluate(self.step)}
                        self.history.append(entry)
                        bar.write(f"step {self.step} ({self.elapsed:.0f}s): " + ", ".join(
                            f"{k} {v:.4g}" for k, v in entry.items() if isinstance(v, float) and k != "elapsed"))
                        record({"eval": True, **entry})
                    if time.perf_counter() - last_checkpoint > cfg.checkpoint_every_s:
                        self.save()
                        last_checkpoint = time.perf_counter()
        except KeyboardInterrupt:
            self.save()
            if self.group.is_main:
                bar.write(f"interrupted: checkpoint at step {self.step} saved{self.where}")
            raise
        finally:
            bar.close()
            for stream in (log, board):
                if stream:
                    stream.close()
            if writes:
                write_curves(self.log_path, self.log_path.parent / "curves.png")
        self.save()
        return self.history


def _parameters_of(optimizer: torch.optim.Optimizer) -> Iterable[torch.Tensor]:
    return (p for group in optimizer.param_groups for p in group["params"])
