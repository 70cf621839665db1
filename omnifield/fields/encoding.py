"""The encoding interface: ``x [..., D] in [0, 1]^D -> features [..., F]``.

Every encoding (frequency, hash grid, tri-plane, NeuRBF, Gaussian embedding)
subclasses :class:`Encoding`, so any encoding feeds any decoder. Inputs are
normalised coordinates in the unit cube; fields map their own box there.
"""

from __future__ import annotations

import torch
from torch import nn


class Encoding(nn.Module):
    """Base class. Subclasses set ``n_input_dims``/``n_output_dims`` and implement :meth:`encode`.

    ``forward`` accepts any leading batch shape and calls ``encode`` on ``[N, D]``.
    """

    n_input_dims: int
    n_output_dims: int

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, F]
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., D] -> [..., F]
        if x.shape[-1] != self.n_input_dims:
            raise ValueError(
                f"{type(self).__name__} expects {self.n_input_dims}-D inputs, got shape {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        out = self.encode(x.reshape(-1, self.n_input_dims))
        return out.reshape(*lead, self.n_output_dims)
