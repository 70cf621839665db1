"""``benchmarks/step_times.py``: the per-step arithmetic, the interleaving, failures and step checks, without
running any training (a fake checkout stands in for the subprocesses)."""

import json
import struct

import pytest

from benchmarks.step_times import (
    BY_NAME,
    Checkout,
    Task,
    TaskFailed,
    checkpoint_step,
    measure,
    parse_args,
    pde_history_steps,
    per_step,
    selected,
    table,
)


class FakeCheckout:
    """Wall time = start-up + n * cost; records the order of calls; ``fail`` makes every run fail."""

    def __init__(self, label, start, cost, calls, fail=None):
        self.label, self.start, self.cost, self.calls, self.fail = label, start, cost, calls, fail
        self.root = f"/src/{label}"

    def timed(self, task, n, tag):
        self.calls.append((self.label, n, tag))
        if self.fail:
            raise TaskFailed(self.fail)
        return self.start + n * self.cost


def test_per_step_removes_the_fixed_cost():
    assert per_step(3.0 + 10 * 0.25, 3.0 + 50 * 0.25, 10, 50) == pytest.approx(0.25)


def test_measure_interleaves_checkouts_and_takes_the_ratio():
    calls = []
    this, base = FakeCheckout("this", 7.0, 0.02, calls), FakeCheckout("baseline", 2.0, 0.01, calls)
    row = measure(BY_NAME["fit_image"], [this, base], 10, 110, repeats=2, log=lambda s: None)
    assert row["seconds_per_step"] == pytest.approx({"this": 0.02, "baseline": 0.01})
    assert row["ratio"] == pytest.approx(2.0)
    assert [c[:2] for c in calls] == [("this", 10), ("baseline", 10)] + [
        ("this", 10), ("this", 110), ("baseline", 10), ("baseline", 110)] * 2
    assert calls[0][2] == "warmup"


def test_a_failing_checkout_is_reported_not_raised():
    calls = []
    this, base = FakeCheckout("this", 1.0, 0.5, calls), FakeCheckout("baseline", 1.0, 0.5, calls, fail="exit 2: boom")
    row = measure(BY_NAME["pde_adam"], [this, base], 2, 4, repeats=3, log=lambda s: None)
    assert row["seconds_per_step"] == {"this": pytest.approx(0.5), "baseline": None}
    assert row["ratio"] is None and row["failed"] == {"baseline": "exit 2: boom"}
    assert sum(1 for c in calls if c[0] == "baseline") == 1  # not retried after the first failure
    assert "failed in baseline: exit 2: boom" in table([row], ["this", "baseline"])


def test_run_with_other_step_count_is_a_failure(tmp_path):
    def fake_run(argv, out):
        out.mkdir(parents=True)
        made = int(argv[argv.index("--steps") + 1]) - 1  # one step short
        history = [{"step": s, "phase": "adam"} for s in range(0, made, 10)] + [{"step": made - 1, "phase": "adam"}]
        (out / "loss_history.json").write_text(json.dumps(history))
        return 1.0

    checkout = Checkout("this", tmp_path, 2, tmp_path)
    checkout.run = fake_run
    with pytest.raises(TaskFailed, match="asked for 20 steps, the run made 19"):
        checkout.timed(BY_NAME["pde_adam"], 20, "r0")


def test_step_readers(tmp_path):
    meta = {"omnifield": json.dumps({"format_version": 1, "step": 37})}
    header = json.dumps({"__metadata__": meta}).encode()
    (tmp_path / "checkpoint.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    assert checkpoint_step(tmp_path) == 37
    history = [{"step": 0, "phase": "adam"}, {"step": 0, "phase": "adam"}, {"step": 26, "phase": "lbfgs"}]
    (tmp_path / "loss_history.json").write_text(json.dumps(history))
    assert pde_history_steps(tmp_path) == 26  # = 1 Adam step + 25 L-BFGS iterations: pde_lbfgs's expected(25)
    assert BY_NAME["pde_lbfgs"].expected(25) == 26


def test_arguments():
    args = parse_args(["--quick", "--tasks", "train_mlp,fit_image"])
    assert args.repeats == 1 and args.threads == 2
    assert [(t.name, n1, n2) for t, n1, n2 in selected(args)] == [
        ("train_mlp", *BY_NAME["train_mlp"].full), ("fit_image", *BY_NAME["fit_image"].quick)]
    assert all(isinstance(t, Task) and t.quick for t, _, _ in selected(parse_args(["--quick"])))
    assert "convert_splat" not in [t.name for t, _, _ in selected(parse_args([]))]  # opt-in only
    assert [n for _, *n in selected(parse_args(["--steps", "3,9", "--tasks", "pde_insr"]))] == [[3, 9]]
    assert parse_args([]).repeats == 3
    for bad in (["--tasks", "nope"], ["--steps", "9,3"], ["--repeats", "0"], ["--baseline-repo", "/nonexistent"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
