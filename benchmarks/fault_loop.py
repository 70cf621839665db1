"""Fault tests under load, many times in a row: kill/resume, Ctrl-C, kill during the first compile, full disk.

Each round runs the fault tests of the suite (``pytest -k`` on the crash, resume, interrupt and native-build
tests) in a fresh process while ``--burners`` processes keep every core busy, and counts the rounds each test
passes. A fault test that depends on timing fails here long before it fails in CI.

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


def burn(stop_at: float) -> None:
    """Keep one core busy until ``stop_at`` (a monotonic time)."""
    x = 0
    while time.monotonic() < stop_at:
        x = (x * 1103515245 + 12345) % 2**31


def one_round(tests: list[str]) -> tuple[Counter, Counter, float]:
    """Run ``tests`` once with pytest; (passed, failed) counts per test id and the seconds it took."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--timeout=900",
                          *tests], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    passed, failed = Counter(), Counter()
    for line in out.stdout.splitlines():
        match = re.match(r"(PASSED|FAILED|ERROR) (\S+)", line)
        if match:
            (passed if match.group(1) == "PASSED" else failed)[match.group(2)] += 1
    return passed, failed, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds in a row (default 20)")
    parser.add_argument("--burners", type=int, default=multiprocessing.cpu_count(),
                        help="CPU-burning processes beside the tests (default: one per core)")
    parser.add_argument("--quick", action="store_true", help="2 rounds")
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
            p, f, s = one_round(tests)
        finally:
            for b in burners:
                b.terminate()
        passed.update(p)
        failed.update(f)
        seconds.append(s)
        print(f"round {r + 1}/{rounds}: {sum(p.values())} passed, {sum(f.values())} failed in {s:.0f} s "
              f"(load: {args.burners} burners)", flush=True)
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
