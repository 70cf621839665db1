"""The training engine on a toy task: budget, resume bit for bit, Ctrl-C, divergence, clipping, log."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch

from omnifield.engine import Engine, LoopConfig
from omnifield.errors import OmnifieldError


class LineFit:
    """Fits ``y = 3x - 1`` with SGD on batches drawn from its own generator."""

    counters = ("points",)

    def __init__(self, fail_at: int | None = None, interrupt_at: int | None = None, clock=None):
        self.model = torch.nn.Linear(1, 1)
        torch.nn.init.zeros_(self.model.weight)
        torch.nn.init.zeros_(self.model.bias)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.1)
        self.generator = torch.Generator().manual_seed(0)
        self.fail_at, self.interrupt_at, self.clock = fail_at, interrupt_at, clock
        self.checkpoints: list[tuple[dict, dict]] = []
        self.progress_seen: list[float] = []
        self.evaluations = 0

    def training_step(self, step, progress):
        if step == self.interrupt_at:
            raise KeyboardInterrupt
        if self.clock is not None:
            self.clock.advance(10.0 if step == 0 else 1.0)  # the first step "compiles" for 10 s
        self.progress_seen.append(progress)
        x = torch.rand(64, 1, generator=self.generator) + torch.rand(64, 1)  # both RNGs must be restored
        loss = torch.mean((self.model(x) - (3 * x - 1)) ** 2)
        if step == self.fail_at:
            loss = loss * float("nan")
        return loss, {"loss": float(loss.detach()), "points": 64.0}

    def state(self):
        return {"rng/generator": self.generator.get_state(), **{f"model/{k}": v for k, v in
                                                                self.model.state_dict().items()}}, {"note": "line"}

    def restore(self, tensors, meta):
        assert meta["note"] == "line"
        self.generator.set_state(tensors["rng/generator"])
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})

    def write_checkpoint(self, tensors, meta):
        self.checkpoints.append(({k: v.clone() for k, v in tensors.items()}, dict(meta)))

    def evaluate(self, step):
        self.evaluations += 1
        return {"weight": float(self.model.weight.detach())}


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def advance(self, seconds):
        self.now += seconds

    def __call__(self):
        return self.now


def _params(task):
    return torch.cat([p.detach().flatten() for p in task.model.parameters()])


def test_step_budget_trains_and_converges():
    task = LineFit()
    engine = Engine(task, LoopConfig(steps=300, progress=False))
    engine.run()
    assert engine.step == 300 and len(task.checkpoints) == 1  # one checkpoint: at the end
    assert _params(task).tolist() == pytest.approx([3.0, -1.0], abs=0.05)
    assert task.checkpoints[-1][1]["step"] == 300
    assert task.progress_seen[0] == 0.0 and task.progress_seen[-1] == pytest.approx(299 / 300)


def test_time_budget_leaves_the_first_step_out(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("omnifield.engine.loop.time.perf_counter", clock)
    task = LineFit(clock=clock)
    engine = Engine(task, LoopConfig(minutes=0.5, progress=False))  # 30 s: the 10 s first step is free
    engine.run()
    assert engine.step == 31 and engine.elapsed == pytest.approx(30.0)


def test_resume_continues_bit_for_bit():
    torch.manual_seed(1)
    first = LineFit(interrupt_at=8)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C: a checkpoint at the step reached, then re-raised
        Engine(first, LoopConfig(steps=20, progress=False)).run()
    tensors, meta = first.checkpoints[-1]
    assert meta["step"] == 8
    resumed = LineFit()
    engine = Engine(resumed, LoopConfig(steps=20, progress=False))
    engine.restore(tensors, meta)
    engine.run()
    assert engine.step == 20
    torch.manual_seed(1)
    straight = LineFit()
    Engine(straight, LoopConfig(steps=20, progress=False)).run()
    assert torch.equal(_params(straight), _params(resumed))


class _InterruptsWhenCollected:
    """Sends this process SIGINT from its finalizer, so that Python's KeyboardInterrupt would be raised inside
    ``__del__``, where Python prints it as "ignored" and drops it."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):  # bytecodes inside the finalizer: the signal is handled here
            pass


def _interrupting_at(task: LineFit, at: int, make_interrupt) -> LineFit:
    original = task.training_step

    def training_step(step, progress):
        if step == at:
            make_interrupt()
        return original(step, progress)

    task.training_step = training_step
    return task


@pytest.fixture
def python_sigint():
    """SIGINT raising ``KeyboardInterrupt``, as in a terminal, even when the suite runs as a background job
    (which inherits SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_inside_a_finalizer_is_not_lost(python_sigint):
    """Held by the engine, a Ctrl-C handled inside a finalizer still stops the run after its step, with a
    checkpoint; the SIGINT handler is Python's again afterwards."""
    task = _interrupting_at(LineFit(), 5, _InterruptsWhenCollected)  # made and collected at once
    engine = Engine(task, LoopConfig(steps=50, progress=False))
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    assert engine.step == 6 and task.checkpoints[-1][1]["step"] == 6
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_interrupts_the_step_itself(python_sigint):
    def twice():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):
            pass

    task = _interrupting_at(LineFit(), 5, twice)
    engine = Engine(task, LoopConfig(steps=50, progress=False))
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    assert engine.step == 5 and task.checkpoints[-1][1]["step"] == 5  # the step never finished


def test_divergence_is_one_error_and_writes_nothing_after():
    task = LineFit(fail_at=5)
    with pytest.raises(OmnifieldError, match=r"training diverged at step 5 \(loss is nan\).*--grad-clip"):
        Engine(task, LoopConfig(steps=20, checkpoint_every_s=0, progress=False), where="RUN").run()
    assert [meta["step"] for _, meta in task.checkpoints] == [1, 2, 3, 4, 5]
    assert all(torch.isfinite(v).all() for k, v in task.checkpoints[-1][0].items() if k.startswith("model/"))


def test_gradient_clip_bounds_the_gradient():
    task = LineFit()
    seen = []
    task.optimizer.step = lambda: seen.append(float(torch.cat([p.grad.flatten() for p in task.model.parameters()])
                                                    .norm()))
    Engine(task, LoopConfig(steps=3, grad_clip=1e-3, progress=False)).run()
    assert len(seen) == 3 and max(seen) <= 1e-3 * 1.0001


def test_log_counters_and_evaluation_schedule(tmp_path):
    task = LineFit()
    log = tmp_path / "log.jsonl"
    history = Engine(task, LoopConfig(steps=10, log_every=4, eval_every=5, progress=False), log_path=log).run()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [line["step"] for line in lines if not line.get("eval")]
    assert steps == [1, 4, 8]
    assert all(line["points_per_s"] > 0 for line in lines if not line.get("eval"))
    assert task.evaluations == 2 and [h["step"] for h in history] == [5, 10]


@pytest.mark.parametrize("bad", [dict(steps=0, minutes=0.0), dict(steps=-1), dict(minutes=math.nan),
                                 dict(steps=5, grad_clip=-1.0)])
def test_impossible_budgets_are_refused(bad):
    with pytest.raises(OmnifieldError):
        Engine(LineFit(), LoopConfig(**bad))


def test_curves_png_and_tensorboard_events_beside_the_log(tmp_path):
    """Every run folder gets ``curves.png`` (loss against training time); ``tensorboard`` adds event files
    whose scalars are the log's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = tmp_path / "log.jsonl"
    Engine(LineFit(), LoopConfig(steps=12, log_every=3, eval_every=6, progress=False, tensorboard=True),
           log_path=log).run()
    png = (tmp_path / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    logged = [json.loads(line) for line in log.read_text().splitlines() if "eval" not in line]
    scalars = events.Scalars("train/loss")
    assert [s.step for s in scalars] == [r["step"] for r in logged]
    assert [s.value for s in scalars] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    assert [s.step for s in events.Scalars("eval/weight")] == [6, 12]
