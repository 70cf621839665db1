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
from safetensors.torch import load_file, save
from tqdm import tqdm

from omnifield.config import config_from_dict, config_to_dict, register_config
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
        """``n_steps`` steps with a progress bar; ``on_step(stepper, record)`` after each."""
        if not self.initialised:
            self.initialise()
        records = []
        bar = tqdm(range(n_steps), desc="INSR steps", unit="step", disable=not progress)
        for _ in bar:
            record = self.step()
            iters = sum(s["iters"] for s in record["stages"].values())
            bar.set_postfix(t=f"{self.time:.3g}", iters=iters)
            if on_step is not None:
                on_step(self, record)
            records.append(record)
        return records

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

    def save(self, path: str | os.PathLike) -> None:
        """Write ``path.safetensors`` (weights, previous states, RNG) and ``path.json`` (configs, step, log)."""
        base = Path(path).with_suffix("")
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
        write_bytes_atomic(base.with_suffix(".safetensors"), save(tensors))  # no safetensors-owned temporary
        write_text_atomic(base.with_suffix(".json"), json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "InsrStepper":
        """Rebuild a stepper written by :meth:`save` (problem and configs come from the JSON)."""
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
        except Exception as exc:  # noqa: BLE001 - any read failure is a corrupt file
            raise OmnifieldError(f"{weights_path}: cannot read safetensors ({exc})") from None
        problem = config_from_dict(meta["problem"], f"{meta_path}:problem")
        stepper = cls(problem, config_from_dict(meta["stepper"], f"{meta_path}:stepper"))
        stepper.field_cfgs = {n: config_from_dict(c, f"{meta_path}:fields.{n}") for n, c in meta["fields"].items()}
        states: list[Fields] = []
        for k in range(max(1, meta["n_history"])):
            prefix = "fields" if k == 0 else f"history.{k}"
            state = {}
            for name, fcfg in stepper.field_cfgs.items():
                module = fcfg.build()
                own = {key[len(prefix) + len(name) + 2 :]: v for key, v in tensors.items() if key.startswith(f"{prefix}.{name}.")}
                try:
                    module.load_state_dict(own)
                except RuntimeError as exc:
                    raise OmnifieldError(f"{weights_path}: weights of {prefix}.{name} do not match its config ({exc})") from None
                state[name] = module
            states.append(state)
        stepper.fields = states[0]
        stepper.history = [frozen_copy(states[0])] + [frozen_copy(s) for s in states[1:]] if meta["n_history"] else []
        stepper.generator.set_state(tensors["rng"])
        stepper.step_index = int(meta["step"])
        stepper.log = list(meta["log"])
        return stepper

