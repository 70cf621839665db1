"""Fault tests under load, many times in a row: kill/resume, Ctrl-C, kill during the first compile, full disk.

Each round runs the fault tests of the suite (the tests of the crash, resume, engine and native-build files
whose names say they inject a fault: SIGKILL, SIGINT, a kill or hang during the first compile, a missing
compiler, a full disk, a NaN loss, divergence, time budgets) in a fresh pytest process while ``--burners``
processes keep every core busy, and counts the rounds each test passes. A fault test that depends on timing
fails here long before it fails in CI. A failing test's name and the start of pytest's failure report are
printed in the round that failed.

    python benchmarks/fault_loop.py --rounds 20 [--burners 2] [--out rows.json]
    python benchmarks/fault_loop.py --quick          # 2 rounds
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULT_TESTS = [
    "tests/test_reliability_crash.py",   # SIGKILL mid-write + resume, SIGINT, NaN loss, full disk, unwritable folder
    "tests/test_native_build.py",        # a kill during the first-use compile, stale locks
    "tests/test_engine.py",              # Ctrl-C checkpoint and bit-for-bit resume of the engine
    "tests/test_*resume*.py",            # each command family: SIGKILL then --resume
]
# ``pytest -k``: the tests in those files that inject a fault or race a clock (not their option checks)
FAULT_KEYWORDS = ("sigkill or interrupted or ctrl_c or compile or hung or full_disk or nan_loss or diverg or non_finite "
                  "or time_budget or resume_continues")


def burn(stop_at: float) -> None:
    """Keep one core busy until ``stop_at`` (a monotonic time)."""
    x = 0
    while time.monotonic() < stop_at:
        x = (x * 1103515245 + 12345) % 2**31


def one_round(tests: list[str], keywords: str) -> tuple[Counter, Counter, float, str]:
    """Run ``tests`` selected by ``keywords`` once with pytest; (passed, failed) counts per test id, the
    seconds it took and pytest's report of the failures ("" when none failed)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--timeout=900",
                          "-k", keywords, *tests], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    passed, failed = Counter(), Counter()
    for line in out.stdout.splitlines():
        match = re.match(r"(PASSED|FAILED|ERROR) (\S+)", line)
        if match:
            (passed if match.group(1) == "PASSED" else failed)[match.group(2)] += 1
    report = out.stdout.split("= FAILURES =", 1)[1] if "= FAILURES =" in out.stdout else ""
    return passed, failed, time.perf_counter() - start, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds in a row (default 20)")
    parser.add_argument("--burners", type=int, default=multiprocessing.cpu_count(),
                        help="CPU-burning processes beside the tests (default: one per core)")
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    parser.add_argument("--keywords", default=FAULT_KEYWORDS, help="pytest -k expression choosing the tests")
    parser.add_argument("--out", help="write the table as a JSON list of rows")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    tests = sorted({str(p.relative_to(ROOT)) for pattern in FAULT_TESTS for p in ROOT.glob(pattern)})
    passed, failed, seconds = Counter(), Counter(), []
    for r in range(rounds):
        stop_at = time.monotonic() + 24 * 3600
        burners = [multiprocessing.Process(target=burn, args=(stop_at,), daemon=True) for _ in range(args.burners)]
        for b in burners:
            b.start()
        try:
            p, f, s, report = one_round(tests, args.keywords)
        finally:
            for b in burners:
                b.terminate()
        passed.update(p)
        failed.update(f)
        seconds.append(s)
        print(f"round {r + 1}/{rounds}: {sum(p.values())} passed, {sum(f.values())} failed in {s:.0f} s "
              f"(load: {args.burners} burners)", flush=True)
        for test in f:
            print(f"  FAILED {test}", flush=True)
        if report:  # the first failure's traceback (the report's end repeats the summary)
            print("\n".join(report.splitlines()[:80]), flush=True)
    rows = [{"test": t, "rounds": rounds, "passed": passed[t], "failed": failed[t]}
            for t in sorted(set(passed) | set(failed))]
    width = max((len(r["test"]) for r in rows), default=10)
    print(f"\n{'test':{width}}  passed  failed")
    for row in rows:
        print(f"{row['test']:{width}}  {row['passed']:>6}  {row['failed']:>6}")
    print(f"\n{rounds} rounds with {args.burners} CPU burners, median {sorted(seconds)[len(seconds) // 2]:.0f} s per "
          f"round; {sum(failed.values())} failures")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
