"""Multi-process data-parallel training: process-group set-up and the few collectives trainers use.

``torchrun --nproc_per_node N -m omnifield train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`init_from_environment` joins
them into one group (``gloo`` on CPU, ``nccl`` when the process trains on a GPU). Every rank
draws the same global ray batch and keeps its own shard (:func:`shard`); gradients are averaged
by ``DistributedDataParallel``; rank 0 alone writes checkpoints, logs and renders. Without
``WORLD_SIZE`` (or with 1) everything here is a no-op, so single-process code runs unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from omnifield.errors import OmnifieldError

_device = "cpu"  # the device of the process group joined by init_from_environment


@dataclass(frozen=True)
class ProcessGroup:
    """This process' place in the group: ``rank`` in ``[0, world_size)``."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"  # where the collectives' tensors live (NCCL needs them on the GPU)

    @property
    def active(self) -> bool:
        """Whether more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints progress."""
        return self.rank == 0


def init_from_environment(device: torch.device | str = "cpu") -> ProcessGroup:
    """Join the process group torchrun describes in the environment (single process: no-op).

    ``device`` is where this rank trains (see :func:`omnifield.backend.resolve_device`); CUDA ranks use
    NCCL and bind to that GPU.
    """
    global _device
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ProcessGroup()
    if not dist.is_initialized():
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise OmnifieldError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: start with torchrun")
        device = torch.device(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        _device = str(device)
    return current()


def current() -> ProcessGroup:
    """The process group joined so far (a single process when none)."""
    if dist.is_available() and dist.is_initialized():
        return ProcessGroup(dist.get_rank(), dist.get_world_size(), _device)
    return ProcessGroup()


def shard(n: int, group: ProcessGroup) -> slice:
    """This rank's contiguous part of ``n`` items (sizes differ by at most one)."""
    start = n * group.rank // group.world_size
    stop = n * (group.rank + 1) // group.world_size
    return slice(start, stop)


def sum_over_ranks(values: list[float], group: ProcessGroup) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (identity for one process)."""
    if not group.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=group.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_from_main(tensors: list[torch.Tensor], group: ProcessGroup) -> None:
    """Overwrite ``tensors`` in place with rank 0's values."""
    if group.active:
        for t in tensors:
            dist.broadcast(t.view(torch.uint8) if t.dtype == torch.bool else t, src=0)  # gloo has no bool


def shutdown() -> None:
    """Leave the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
