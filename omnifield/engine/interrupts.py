"""Ctrl-C that is never lost: a first SIGINT is held as a flag for the training loop to act on between steps.

Python turns SIGINT into ``KeyboardInterrupt`` at whatever bytecode runs next. When that is a finalizer
(``__del__``, a weakref or garbage-collector callback), the exception is printed as "ignored" and
dropped, and the run trains on as if the user had never pressed Ctrl-C (a test provokes exactly this).
Inside :func:`held_interrupts` the first SIGINT only sets a flag, which the loop reads after each step
(it then saves and raises ``KeyboardInterrupt`` itself); a second SIGINT raises at once, for a step that
never ends. A process that ignores SIGINT (started with ``nohup`` or as a background job) keeps ignoring it.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def held_interrupts() -> Iterator[Callable[[], bool]]:
    """Yield ``interrupted()``, true once a SIGINT has arrived inside the block. Only in the main thread
    and where SIGINT raises ``KeyboardInterrupt`` (Python's default handler); elsewhere the handling is
    left as it is and ``interrupted()`` stays false."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield lambda: False
        return
    received: list[int] = []

    def hold(signum, frame) -> None:
        if received:  # the second Ctrl-C: do not wait for the step to end
            raise KeyboardInterrupt
        received.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
