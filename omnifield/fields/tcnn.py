"""tiny-cuda-nn versions of the hash grid and the MLP decoder (CUDA only, optional).

Chosen by :func:`omnifield.backend.resolve_implementation` from the configs' ``implementation``
field (``auto`` = tiny-cuda-nn when it imports and CUDA is present). The hyper-parameters map
one to one (levels, features, table size, base resolution, the same geometric growth), but the
parameter layouts do not: tiny-cuda-nn keeps one flat ``params`` vector and its fused MLPs have no
biases, so a run trained with one implementation is re-opened with the same one (the checkpoint
loader says so when they differ).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from omnifield.fields.encoding import Encoding

# our activation names -> tiny-cuda-nn's (it has no SiLU/GELU: such MLPs stay ours under "auto")
TCNN_ACTIVATIONS = {"relu": "ReLU", "none": "None", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus"}
FUSED_WIDTHS = (16, 32, 64, 128)


def hash_grid_encoding_config(n_input_dims: int, cfg) -> dict:
    """tiny-cuda-nn ``HashGrid`` encoding config equivalent to a :class:`HashGridConfig`."""
    growth = math.exp((math.log(cfg.max_resolution) - math.log(cfg.base_resolution)) / max(cfg.n_levels - 1, 1))
    return {
        "otype": "HashGrid",
        "n_levels": cfg.n_levels,
        "n_features_per_level": cfg.n_features_per_level,
        "log2_hashmap_size": cfg.log2_hashmap_size,
        "base_resolution": cfg.base_resolution,
        "per_level_scale": growth,
    }


def mlp_network_config(cfg) -> dict | None:
    """tiny-cuda-nn network config for an :class:`MLPConfig`, or None when it has no equivalent."""
    if cfg.activation not in TCNN_ACTIVATIONS or cfg.output_activation not in TCNN_ACTIVATIONS:
        return None
    if cfg.n_hidden_layers < 1:
        return None
    return {
        "otype": "FullyFusedMLP" if cfg.width in FUSED_WIDTHS else "CutlassMLP",
        "activation": TCNN_ACTIVATIONS[cfg.activation],
        "output_activation": TCNN_ACTIVATIONS[cfg.output_activation],
        "n_neurons": cfg.width,
        "n_hidden_layers": cfg.n_hidden_layers,
    }


class TcnnHashGrid(Encoding):
    """Hash encoding by tiny-cuda-nn: ``[N, D] in [0,1]^D -> [N, n_levels * n_features_per_level]`` (float32)."""

    def __init__(self, n_input_dims: int, cfg):
        super().__init__()
        import tinycudann as tcnn

        self.cfg = cfg
        self.n_input_dims = n_input_dims
        self.n_output_dims = cfg.n_levels * cfg.n_features_per_level
        self.tcnn = tcnn.Encoding(n_input_dims, hash_grid_encoding_config(n_input_dims, cfg))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.tcnn(x.clamp(0.0, 1.0).contiguous()).float()


class TcnnMLP(nn.Module):
    """Fully fused MLP by tiny-cuda-nn, ``h [..., n_in] -> [..., n_out]`` (float32; no biases).

    ``forward(h, x=None)`` has the signature of :class:`omnifield.fields.mlp.MLP`.
    """

    def __init__(self, n_in: int, n_out: int, cfg, network_config: dict):
        super().__init__()
        import tinycudann as tcnn

        self.cfg, self.n_in, self.n_out = cfg, n_in, n_out
        self.tcnn = tcnn.Network(n_in, n_out, network_config)

    def forward(self, h: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        lead = h.shape[:-1]
        out = self.tcnn(h.reshape(-1, self.n_in).contiguous()).float()
        return out.reshape(*lead, self.n_out)
