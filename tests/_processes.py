"""Kill/resume tests: ``omnifield`` in a child process, robust on a loaded machine, and Ctrl-C in this one.

The child writes its output to files, not to pipes (a pipe nobody reads stalls a progress bar), every wait
polls gently with a generous timeout (a loaded machine starts a process slowly), and no child outlives the
test that started it, whichever way the test ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

from omnifield.io.run_folder import checkpoint_meta

REPO = Path(__file__).resolve().parents[1]


def child_env(**env: str) -> dict[str, str]:
    """This process's environment with this checkout's package first, the torch twins on one thread, ``env``."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMNIFIELD_BACKEND": "torch", "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **env}


def start(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    """``python -m omnifield ARGS`` (environment: :func:`child_env`); stdout/stderr to ``log``.out/.err.

    The child gets SIGINT's default disposition, as a command typed in a terminal has: a test suite started
    in the background by a shell (``cmd &``, ``nohup``) inherits SIGINT *ignored*, and Python then never
    raises ``KeyboardInterrupt``, so a Ctrl-C test would wait in vain.
    """
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        return subprocess.Popen([sys.executable, "-m", "omnifield", *args], cwd=REPO, env=child_env(**env),
                                stdout=out, stderr=err, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def output(log: Path) -> tuple[str, str]:
    """What the child started with ``log`` printed: (stdout, stderr)."""
    return log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text()


def stop(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 300.0) -> int:
    """Send ``sig`` unless the child has exited already, wait for it; its return code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=timeout)


@contextmanager
def running(args: list[str], log: Path, **env: str) -> Iterator[subprocess.Popen]:
    """:func:`start` for the ``with`` block; on every way out of it the child is killed (if still running)."""
    proc = start(args, log, **env)
    try:
        yield proc
    finally:
        stop(proc)


def finish(args: list[str], log: Path, timeout: float = 600.0) -> subprocess.Popen:
    """Run ``args`` in a child to its end (output to ``log``.out/.err); the exited process."""
    with running(args, log) as proc:
        proc.wait(timeout=timeout)
    return proc


def checkpoint_step(path: Path) -> int:
    """The step recorded in a checkpoint (0 when there is none yet)."""
    meta = checkpoint_meta(path) if Path(path).is_file() else None
    return int(meta["step"]) if meta else 0


def wait_until(predicate: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float = 300.0,
               poll_s: float = 0.05) -> None:
    """Poll ``predicate`` every ``poll_s``; fail with the child's stderr if it exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"exited early ({proc.returncode}): {output(log)[1][-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s: {output(log)[1][-2000:]}")
        time.sleep(poll_s)


def stop_when(predicate: Callable[[], bool], args: list[str], log: Path, sig: int = signal.SIGKILL,
              timeout: float = 300.0) -> subprocess.Popen:
    """Start ``args``, wait until ``predicate``, send ``sig`` and wait for the exit; the exited process."""
    with running(args, log) as proc:
        wait_until(predicate, proc, log, timeout)
        stop(proc, sig, timeout)
    return proc


def kill_at_checkpoint(args: list[str], checkpoint: Path, log: Path, at_least: int = 3) -> int:
    """Start ``args``, wait for a checkpoint of step >= ``at_least``, SIGKILL; returns the kept step."""
    proc = stop_when(lambda: checkpoint_step(checkpoint) >= at_least, args, log)
    assert proc.returncode == -signal.SIGKILL, f"exited by itself ({proc.returncode}): {output(log)[1][-2000:]}"
    return checkpoint_step(checkpoint)


def ctrl_c_at(monkeypatch: pytest.MonkeyPatch, owner: type, name: str, *, step: int | None = None,
              call: int | None = None) -> None:
    """Ctrl-C (``KeyboardInterrupt``) instead of the method ``owner.name``: when it is called for engine step
    ``step`` (its first argument), or at its ``call``-th call (from 1)."""
    original, calls = getattr(owner, name), []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == call or (step is not None and args[:1] == (step,)):
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, interrupted)
