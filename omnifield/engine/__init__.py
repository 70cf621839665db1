"""The training engine: one loop (:class:`Engine`) that every task runs under (see :mod:`.loop`)."""

from omnifield.engine.loop import Engine, EngineTask, LoopConfig, Task

__all__ = ["Engine", "EngineTask", "LoopConfig", "Task"]
