"""The training-engine task of every field regression: an image, a signed distance, the navigation world.

A :class:`FieldFit` owns a field, its optimiser and the generator its batches are drawn from; what it
regresses is one function, ``batch_loss(generator) -> loss``, that draws a batch and scores the field on
it. The engine (:mod:`omnifield.engine`) does the rest: budget, progress bar, ``log.jsonl``, checkpoints,
Ctrl-C, divergence guard. A checkpoint holds the field (``field/...``), the generator and, from the
engine, the step, training time, torch RNG and optimiser state, beside the run's configs in ``meta``, so
:func:`run_fit` continues a run exactly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch

from omnifield.engine import Engine, LoopConfig
from omnifield.errors import OmnifieldError
from omnifield.io.checkpoint import load_module_state, module_state, remove_stale_temporaries, save_checkpoint

LOG = "log.jsonl"


class FieldFit:
    """Regress ``field`` by ``optimizer`` on batches of ``batch_loss(generator) -> scalar loss``.

    ``generator`` is seeded with ``seed``. ``lr_floor`` (optional) anneals every group's learning rate
    from its initial value down to ``lr_floor`` times it on a cosine over the budget (the engine's
    ``progress``); None keeps it constant. ``checkpoint`` is where checkpoints go (None: nowhere) and
    ``meta`` what they carry besides the training state (the run's configs).
    """

    def __init__(self, field: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 batch_loss: Callable[[torch.Generator], torch.Tensor], seed: int, lr_floor: float | None = None,
                 checkpoint: Path | None = None, meta: dict[str, Any] | None = None):
        self.field, self.optimizer, self.batch_loss = field, optimizer, batch_loss
        self.generator = torch.Generator().manual_seed(seed)
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.lr_floor, self.checkpoint, self.meta = lr_floor, checkpoint, dict(meta or {})
        self.stats: dict[str, float] = {}  # the last step's

    def training_step(self, step: int, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one batch (the engine back-propagates it and steps the optimiser)."""
        if self.lr_floor is not None:
            factor = self.lr_floor + (1.0 - self.lr_floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base * factor
        loss = self.batch_loss(self.generator)
        self.stats = {"loss": float(loss.detach())}
        return loss, self.stats

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The field's weights and buffers and the batch generator; ``meta`` as given."""
        return {**module_state("field", self.field), "rng/generator": self.generator.get_state()}, dict(self.meta)

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Inverse of :meth:`state` (called by the engine after its own state)."""
        where = str(self.checkpoint or "checkpoint")
        load_module_state("field", self.field, tensors, where)
        try:
            self.generator.set_state(tensors["rng/generator"])
        except (KeyError, RuntimeError, TypeError) as exc:
            raise OmnifieldError(f"{where}: checkpoint lacks a usable training state ({exc})") from None

    def write_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, tensors, meta)


def run_fit(task: FieldFit, loop: LoopConfig, resume: tuple[dict, dict] | None = None, description: str = "fit",
            log: Path | None = None) -> Engine:
    """Train ``task`` under ``loop`` (continuing the checkpoint ``resume = (tensors, meta)`` when given);
    ``log`` receives ``log.jsonl`` lines. Returns the engine (``step``, ``elapsed``) once the budget is spent."""
    engine = Engine(task, loop, log_path=log, description=description, postfix=("loss",),
                    where=str(task.checkpoint.parent) if task.checkpoint else "")
    if task.checkpoint is not None:
        task.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(task.checkpoint)
    if resume is not None:
        engine.restore(*resume, where=str(task.checkpoint or "checkpoint"))
    engine.run()
    return engine
