"""A progress bar over the points a long export evaluates, wrapped around its density function."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from tqdm import tqdm


@contextmanager
def counting_progress(density: Callable[[torch.Tensor], torch.Tensor], total: int, desc: str,
                      quiet: bool = False) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """``density`` (``x [..., 3] -> [...]``) that advances a tqdm bar of ``total`` points by each chunk it
    evaluates; the bar is silent with ``quiet`` and closes when the block ends."""
    with tqdm(total=total, desc=desc, unit="pt", unit_scale=True, disable=quiet, leave=False) as bar:
        def counted(x: torch.Tensor) -> torch.Tensor:
            out = density(x)
            bar.update(x[..., 0].numel())
            return out

        yield counted
