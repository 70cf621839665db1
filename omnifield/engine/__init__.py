"""The training engine: one loop (:class:`Engine`) that every task runs under (see :mod:`.loop`)."""

from omnifield.engine.loop import Engine, LoopConfig, Task

__all__ = ["Engine", "LoopConfig", "Task"]
