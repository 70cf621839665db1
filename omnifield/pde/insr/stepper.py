"""The INSR time stepper: one neural field per step, trained so the implicit rule holds (Chen et al., ICML 2023).

``initialise()`` fits every field to the initial condition; each ``step()``
runs the problem's stages, each an Adam optimisation at points resampled every
iteration, warm-started from the previous weights (or re-drawn when
``warm_start=False``), stopped by a convergence test on the loss: every
``window`` iterations (after ``min_iters``) the mean loss of the last window
is compared with the window before and the stage stops when it improved by
less than ``rel_tol`` of its magnitude, or falls below ``abs_tol`` (or at
``max_iters``; ``min_iters = max_iters`` gives a fixed budget).

The state (live fields, previous states, sampling RNG, per-step log) saves to
``PATH.safetensors`` + ``PATH.json`` and resumes bit-for-bit.

Time stepping runs under the training engine (:class:`InsrTask`): one engine step
is one time step, the whole inner optimisation of its stages. So the progress bar
and the step budget count time steps, the engine's step is the stepper's
``step_index``, and every checkpoint holds a finished time step (the stages' inner
optimisers are fresh per stage: no optimiser state to carry). A kill loses at most
the time step in progress, seconds of work; an inner-iteration granularity would
have to checkpoint a stage half-way (its Adam state, the snapshot it reads, its
convergence window) for no gain.

Example::

    problem = AdvectionProblem(n_steps=5)
    stepper = InsrStepper(problem, StepperConfig(max_iters=300))
    stepper.initialise()
    stepper.run(5)
    u = problem.solution(stepper.fields, x)          # [N, 1]
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from omnifield.config import config_from_dict, config_to_dict, register_config
from omnifield.engine import Engine, LoopConfig
from omnifield.errors import OmnifieldError
from omnifield.fields.sine_mlp import SirenConfig
from omnifield.io.atomic import write_bytes_atomic, write_text_atomic
from omnifield.pde.field import parameter_groups
from omnifield.pde.insr.problem import Fields, InsrProblem, StageContext
from omnifield.pde.insr.rules import check_rule

FORMAT = "omnifield.insr/1"


@register_config("insr_stepper")
@dataclass
class StepperConfig:
    """Optimisation settings of every step (and of the initial fit, with ``init_iters``)."""

    rule: str = "midpoint"
    lr: float = 1e-4
    max_iters: int = 400
    min_iters: int = 40
    window: int = 20
    rel_tol: float = 0.01
    abs_tol: float = 0.0
    n_samples: int = 1024
    warm_start: bool = True
    init_iters: int = 1500
    seed: int = 0
    grid_lr_scale: float = 1.0  # Adam rate of encoding/modulation grids = lr * grid_lr_scale


def frozen_copy(fields: Fields) -> Fields:
    """Deep copies of ``fields`` with gradients off (the previous states a loss reads)."""
    out = {}
    for name, module in fields.items():
        twin = copy.deepcopy(module)
        twin.requires_grad_(False)
        out[name] = twin
    return out


class InsrStepper:
    """Steps ``problem`` in time; ``fields`` holds the current state (one module per unknown)."""

    def __init__(self, problem: InsrProblem, cfg: StepperConfig | None = None, decoder: Any = None,
                 encoding: Any = None):
        self.problem = problem
        self.cfg = cfg or StepperConfig()
        check_rule(self.cfg.rule, problem.rules)
        if self.cfg.max_iters < 1 or self.cfg.n_samples < 1 or self.cfg.window < 1:
            raise OmnifieldError("INSR stepper needs max_iters, n_samples and window >= 1")
        torch.manual_seed(self.cfg.seed)
        self.field_cfgs = problem.field_configs(decoder if decoder is not None else SirenConfig())
        if encoding is not None:
            self.field_cfgs = {name: replace(c, encoding=encoding) for name, c in self.field_cfgs.items()}
        try:
            self.fields: Fields = {name: c.build() for name, c in self.field_cfgs.items()}
        except ValueError as exc:
            raise OmnifieldError(f"INSR field: {exc}") from None
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self.history: list[Fields] = []
        self.step_index = 0
        self.log: list[dict] = []

    @property
    def time(self) -> float:
        """Simulated time of the current state."""
        return self.step_index * self.problem.dt

    @property
    def initialised(self) -> bool:
        return bool(self.history)

    def state_bytes(self) -> int:
        """Bytes of the current state (all field parameters, float32)."""
        return sum(p.numel() * p.element_size() for f in self.fields.values() for p in f.parameters())

    def initialise(self) -> dict:
        """Fit every field to the initial condition (regression at sampled points)."""
        record: dict = {"step": 0, "time": 0.0, "stages": {}}
        start = time.perf_counter()
        for name, module in self.fields.items():

            def loss(field, ctx, x, name=name):
                return (field(x) - self.problem.initial_value(name, x)).pow(2).mean()

            record["stages"][f"init_{name}"] = self._optimise(module, loss, None, self.cfg.init_iters)
        record["wall_s"] = time.perf_counter() - start
        self.history = [frozen_copy(self.fields)]
        self.log.append(record)
        return record

    def step(self) -> dict:
        """Advance one time step; returns ``{"stages": {name: {"iters", "loss"}}, "wall_s", ...}``."""
        if not self.initialised:
            raise OmnifieldError("INSR stepper: call initialise() (or load a checkpoint) before step()")
        record: dict = {"step": self.step_index + 1, "time": self.time + self.problem.dt, "stages": {}}
        start = time.perf_counter()
        for stage in self.problem.stages():
            module = self.fields[stage.field]
            if not self.cfg.warm_start:
                self._redraw(module)
            ctx = StageContext(
                snapshot=frozen_copy(self.fields),
                history=self.history,
                dt=self.problem.dt,
                rule=self.cfg.rule,
                time=self.time,
            )
            record["stages"][stage.name] = self._optimise(module, stage.loss, ctx, self.cfg.max_iters)
        record["wall_s"] = time.perf_counter() - start
        self.step_index += 1
        self.history = ([frozen_copy(self.fields)] + self.history)[: max(1, self.problem.n_history)]
        self.log.append(record)
        return record

    def run(
        self,
        n_steps: int,
        progress: bool = True,
        on_step: Callable[["InsrStepper", dict], None] | None = None,
    ) -> list[dict]:
        """``n_steps`` steps under the engine, with a progress bar; ``on_step(stepper, record)`` after each."""
        if not self.initialised:
            self.initialise()
        if n_steps <= 0:
            return []
        task = InsrTask(self, on_step=on_step)
        task.engine(self.step_index + n_steps, progress=progress).run()
        return task.records

    def _redraw(self, module: torch.nn.Module) -> None:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            fresh = type(module)(module.cfg)
        module.load_state_dict(fresh.state_dict())

    def _optimise(self, module, loss_fn, ctx, max_iters: int) -> dict:
        """Adam on ``module`` until the loss stops improving; ``{"iters", "loss"}``."""
        lr = self.cfg.lr
        optimiser = torch.optim.Adam(parameter_groups(module, lr, lr * self.cfg.grid_lr_scale), lr=lr)
        losses: list[float] = []
        w = self.cfg.window
        for it in range(max_iters):
            x = self.problem.sample(self.cfg.n_samples, self.generator).requires_grad_(True)
            loss = loss_fn(module, ctx, x)
            if not torch.isfinite(loss):
                raise OmnifieldError(f"INSR: loss became {loss.item()} at step {self.step_index + 1}; lower --insr-dt or the learning rate")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            n = it + 1
            if n >= max(self.cfg.min_iters, 2 * w) and n % w == 0:
                cur = sum(losses[-w:]) / w
                prev = sum(losses[-2 * w : -w]) / w
                if cur < self.cfg.abs_tol or prev - cur < self.cfg.rel_tol * abs(prev):
                    break
        tail = losses[-w:]
        return {"iters": len(losses), "loss": sum(tail) / len(tail)}

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``(tensors, meta)``: weights, previous states and RNG; configs, step and log (what :meth:`save` writes)."""
        tensors: dict[str, torch.Tensor] = {"rng": self.generator.get_state()}
        for k, state in enumerate([self.fields] + self.history[1:]):
            prefix = "fields" if k == 0 else f"history.{k}"
            for name, module in state.items():
                for key, value in module.state_dict().items():
                    tensors[f"{prefix}.{name}.{key}"] = value.detach().contiguous()
        meta = {
            "format": FORMAT,
            "problem": config_to_dict(self.problem),
            "stepper": config_to_dict(self.cfg),
            "fields": {name: config_to_dict(c) for name, c in self.field_cfgs.items()},
            "step": self.step_index,
            "n_history": len(self.history),
            "log": self.log,
        }
        return tensors, meta

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], where: str = "INSR state") -> None:
        """Continue from :meth:`state` (of a stepper built from the same configs: :meth:`from_meta`)."""
        states: list[Fields] = []
        for k in range(max(1, meta["n_history"])):
            prefix = "fields" if k == 0 else f"history.{k}"
            state = {}
            for name, fcfg in self.field_cfgs.items():
                module = fcfg.build()
                own = {key[len(prefix) + len(name) + 2 :]: v for key, v in tensors.items() if key.startswith(f"{prefix}.{name}.")}
                try:
                    module.load_state_dict(own)
                except RuntimeError as exc:
                    raise OmnifieldError(f"{where}: weights of {prefix}.{name} do not match its config ({exc})") from None
                state[name] = module
            states.append(state)
        self.fields = states[0]
        self.history = [frozen_copy(states[0])] + [frozen_copy(s) for s in states[1:]] if meta["n_history"] else []
        self.generator.set_state(tensors["rng"])
        self.step_index = int(meta["step"])
        self.log = list(meta["log"])

    def save(self, path: str | os.PathLike) -> None:
        """Write ``path.safetensors`` (weights, previous states, RNG) and ``path.json`` (configs, step, log)."""
        write_state(path, *self.state())

    @staticmethod
    def read(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The ``(tensors, meta)`` that :meth:`save` wrote to ``path`` (checked to be an INSR state)."""
        base = Path(path).with_suffix("")
        meta_path, weights_path = base.with_suffix(".json"), base.with_suffix(".safetensors")
        for p in (meta_path, weights_path):
            if not p.is_file():
                raise OmnifieldError(f"{p}: INSR checkpoint file not found")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise OmnifieldError(f"{meta_path}: not valid JSON ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise OmnifieldError(f"{meta_path}: not an INSR checkpoint (expected format {FORMAT!r})")
        try:
            tensors = load_file(str(weights_path))
            with safe_open(str(weights_path), "pt") as fh:
                embedded = (fh.metadata() or {}).get("meta")
        except Exception as exc:  # noqa: BLE001 - any read failure is a corrupt file
            raise OmnifieldError(f"{weights_path}: cannot read safetensors ({exc})") from None
        return tensors, json.loads(embedded) if embedded else meta  # the copy written with the tensors

    @classmethod
    def from_meta(cls, meta: dict[str, Any], where: str = "INSR state") -> "InsrStepper":
        """A stepper of the problem and configs named in ``meta`` (weights still to :meth:`restore`)."""
        problem = config_from_dict(meta["problem"], f"{where}:problem")
        stepper = cls(problem, config_from_dict(meta["stepper"], f"{where}:stepper"))
        stepper.field_cfgs = {n: config_from_dict(c, f"{where}:fields.{n}") for n, c in meta["fields"].items()}
        return stepper

    @classmethod
    def load(cls, path: str | os.PathLike) -> "InsrStepper":
        """Rebuild a stepper written by :meth:`save` (problem and configs come from the JSON)."""
        tensors, meta = cls.read(path)
        where = str(Path(path).with_suffix(".json"))
        stepper = cls.from_meta(meta, where)
        stepper.restore(tensors, meta, str(Path(path).with_suffix(".safetensors")))
        return stepper


class InsrTask:
    """The engine task of an :class:`InsrStepper`: each engine step is one time step (see the module docstring).

    ``checkpoint`` (``PATH.json``; ``None``: none) receives the engine's checkpoints in the stepper's format.
    ``observe(stepper) -> [M, C]`` (optional) records the state after every step in ``frames`` (by step
    index, kept in checkpoints); ``on_step(stepper, record)`` runs after each step; ``records`` holds the
    steps' records of this run.
    """

    optimizer = None  # every stage trains with its own fresh Adam: nothing to carry between steps

    def __init__(self, stepper: InsrStepper, checkpoint: Path | None = None,
                 observe: Callable[[InsrStepper], torch.Tensor] | None = None,
                 on_step: Callable[[InsrStepper, dict], None] | None = None):
        self.stepper, self.checkpoint, self.observe, self.on_step = stepper, checkpoint, observe, on_step
        self.frames: dict[int, torch.Tensor] = {}
        self.records: list[dict] = []

    def engine(self, n_steps: int, progress: bool = True, minutes: float = 0.0, checkpoint_every_s: float = 0.0,
               log_path: Path | None = None) -> Engine:
        """An engine that steps to time step ``n_steps`` (and/or for ``minutes``), starting at the stepper's step."""
        loop = LoopConfig(steps=n_steps, minutes=minutes, log_every=1, checkpoint_every_s=checkpoint_every_s,
                          progress=progress)
        engine = Engine(self, loop, log_path=log_path, description="INSR steps", postfix=("t", "iters", "loss"),
                        where=str(self.checkpoint.parent) if self.checkpoint is not None else "")
        engine.step = self.stepper.step_index
        return engine

    def record_frame(self) -> None:
        """Observe the current state (once per step index)."""
        if self.observe is not None and self.stepper.step_index not in self.frames:
            with torch.no_grad():
                self.frames[self.stepper.step_index] = self.observe(self.stepper)

    def training_step(self, step: int, progress: float) -> tuple[None, dict[str, float]]:
        """One time step (its stages optimise themselves)."""
        record = self.stepper.step()
        self.record_frame()
        if self.on_step is not None:
            self.on_step(self.stepper, record)
        self.records.append(record)
        stages = record["stages"].values()
        return None, {"loss": sum(s["loss"] for s in stages), "iters": float(sum(s["iters"] for s in stages)),
                      "t": self.stepper.time}

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The stepper's state and the frames."""
        tensors, meta = self.stepper.state()
        tensors.update({f"frame.{k}": v for k, v in self.frames.items()})
        return tensors, meta

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Continue from :meth:`state`."""
        self.stepper.restore(tensors, meta, str(self.checkpoint or "INSR state"))
        self.frames = {int(k[len("frame."):]): v for k, v in tensors.items() if k.startswith("frame.")}

    def write_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """``PATH.safetensors`` + ``PATH.json`` in the stepper's format (the engine's entries beside)."""
        if self.checkpoint is not None:
            write_state(self.checkpoint, tensors, meta)


def write_state(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """``path.safetensors`` (the tensors, and ``meta`` in its header) then ``path.json`` (``meta``), each atomically.

    The header's copy keeps the pair consistent when a kill falls between the two writes."""
    base = Path(path).with_suffix("")
    text = json.dumps(meta, indent=1)
    blob = save({k: v.contiguous() for k, v in tensors.items()}, metadata={"meta": text})
    write_bytes_atomic(base.with_suffix(".safetensors"), blob)  # no safetensors-owned temporary
    write_text_atomic(base.with_suffix(".json"), text)
