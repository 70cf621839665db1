"""Per-image appearance embeddings (NeRF-W's appearance codes, nerfacto's ``embedding_appearance``).

Each training image ``i`` owns a learned code ``e_i [dim]`` that joins the colour head's input, so
exposure and white-balance changes between photos are explained by the code instead of the geometry.
Held-out views have no trained code: they are rendered with the mean of the training codes.
"""

from __future__ import annotations

import torch
from torch import nn


class AppearanceEmbedding(nn.Module):
    """``n_images`` codes of ``dim`` values (``nn.Embedding``, N(0, 1) at the start).

    - ``forward(image_ids [...]) -> [..., dim]``: the codes of training images;
    - ``mean_code() -> [dim]``: the code for views without one (held-out views, orbits).
    """

    def __init__(self, n_images: int, dim: int):
        super().__init__()
        if n_images < 1 or dim < 1:
            raise ValueError(f"an appearance embedding needs n_images >= 1 and dim >= 1, got {n_images}, {dim}")
        self.embedding = nn.Embedding(n_images, dim)

    @property
    def dim(self) -> int:
        return self.embedding.embedding_dim

    def forward(self, image_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(image_ids)

    def mean_code(self) -> torch.Tensor:
        """Mean of the training codes ``[dim]``."""
        return self.embedding.weight.mean(0)
