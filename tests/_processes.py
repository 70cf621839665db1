"""Running ``omnifield`` in a child process for kill/resume tests, robust on a loaded machine.

The child writes its output to files, not to pipes (a pipe nobody reads stalls a progress bar), and
every wait polls gently with a generous timeout: a loaded machine starts a process slowly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from omnifield.io.run_folder import checkpoint_meta

REPO = Path(__file__).resolve().parents[1]


def start(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    """``python -m omnifield ARGS`` with the torch twins on one thread; stdout/stderr to ``log``.out/.err."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMNIFIELD_BACKEND": "torch", "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **env}
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        return subprocess.Popen([sys.executable, "-m", "omnifield", *args], cwd=REPO, env=env, stdout=out, stderr=err)


def checkpoint_step(path: Path) -> int:
    """The step recorded in a checkpoint (0 when there is none yet)."""
    meta = checkpoint_meta(path) if Path(path).is_file() else None
    return int(meta["step"]) if meta else 0


def wait_until(predicate: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float = 300.0) -> None:
    """Poll ``predicate`` until true; fail with the child's stderr if it exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"exited early ({proc.returncode}): {log.with_suffix('.err').read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out: {log.with_suffix('.err').read_text()[-2000:]}")
        time.sleep(0.05)


def kill_at_checkpoint(args: list[str], checkpoint: Path, log: Path, at_least: int = 3) -> int:
    """Start ``args``, wait for a checkpoint of step >= ``at_least``, SIGKILL; returns the kept step."""
    proc = start(args, log)
    wait_until(lambda: checkpoint_step(checkpoint) >= at_least, proc, log)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return checkpoint_step(checkpoint)
