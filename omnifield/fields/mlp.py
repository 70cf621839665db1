"""Fully connected decoders."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from omnifield.backend import native_kernels, resolve_implementation, wide_vector_registers
from omnifield.config import register_config

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "none": nn.Identity,
    "sigmoid": nn.Sigmoid,
}


@register_config("mlp")
@dataclass
class MLPConfig:
    """``n_hidden_layers`` hidden layers of width ``width``; activation by name (relu, tanh, silu, ...)."""

    width: int = 64
    n_hidden_layers: int = 1
    activation: str = "relu"
    output_activation: str = "none"
    bias: bool = True
    implementation: str = "auto"  # auto | omnifield | tcnn (auto = tiny-cuda-nn's fused MLP on CUDA when installed)

    def build(self, n_in: int, n_out: int) -> nn.Module:
        """Our :class:`MLP`, or tiny-cuda-nn's when the implementation resolves to it and it can express
        this MLP (its activations, at least one hidden layer; it has no biases)."""
        if resolve_implementation(self.implementation, "MLP") == "tcnn":
            from omnifield.fields.tcnn import TcnnMLP, mlp_network_config

            network = mlp_network_config(self)
            if network is not None:
                return TcnnMLP(n_in, n_out, self, network)
            if self.implementation == "tcnn":
                raise ValueError(f"tiny-cuda-nn has no MLP with activation {self.activation!r}/"
                                 f"{self.output_activation!r} and {self.n_hidden_layers} hidden layers")
        return MLP(n_in, n_out, self)


class MLP(nn.Module):
    """``h [..., n_in] -> [..., n_out]``. ``forward(h, x=None)``: ``x`` (the input coordinate) is
    accepted and ignored so that coordinate-aware decoders share the same call.

    ReLU MLPs with biases, a hidden width that is a multiple of 16 (at most 128) and input/output
    widths up to 128 run as one fused native kernel on CPU float32 tensors (``omnifield/native/mlp.cpp``);
    the layer-by-layer torch code below is its twin and runs everywhere else.
    """

    def __init__(self, n_in: int, n_out: int, cfg: MLPConfig | None = None):
        super().__init__()
        self.cfg = cfg or MLPConfig()
        for name in (self.cfg.activation, self.cfg.output_activation):
            if name not in _ACTIVATIONS:
                raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
        if self.cfg.width <= 0 or self.cfg.n_hidden_layers < 0:
            raise ValueError("MLP width must be > 0 and n_hidden_layers >= 0")
        self.n_in, self.n_out = n_in, n_out
        dims = [n_in] + [self.cfg.width] * self.cfg.n_hidden_layers + [n_out]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=self.cfg.bias) for a, b in zip(dims[:-1], dims[1:]))
        self.act = _ACTIVATIONS[self.cfg.activation]()
        self.out_act = _ACTIVATIONS[self.cfg.output_activation]()
        self.fusable = (self.cfg.activation == "relu" and self.cfg.bias and self.cfg.n_hidden_layers >= 1
                        and self.cfg.width % 16 == 0 and max(self.cfg.width, n_in, n_out) <= 128)

    def forward(self, h: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        params = self._layer_parameters()
        fused = self.fusable and h.shape[-1] == self.n_in and wide_vector_registers()
        lib = native_kernels(h, "mlp") if fused else None
        if lib is not None and all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params):
            y = _NativeMLP.apply(lib, h.reshape(-1, self.n_in), *params)
            return self.out_act(y.reshape(*h.shape[:-1], self.n_out))
        return self.out_act(_mlp_layers(h, params, self.act))

    def twin(self, h: torch.Tensor) -> torch.Tensor:
        """The layers one by one in torch, without the output activation: ``[..., n_in] -> [..., n_out]``."""
        return _mlp_layers(h, self._layer_parameters(), self.act)

    def _layer_parameters(self) -> list[torch.Tensor | None]:
        return [t for layer in self.layers for t in (layer.weight, layer.bias)]


def _mlp_layers(h: torch.Tensor, params: list[torch.Tensor | None], act) -> torch.Tensor:
    """Torch layers over ``params = [w0, b0, w1, b1, ...]`` (biases may be ``None``), ``act`` between them."""
    for i in range(0, len(params) - 2, 2):
        h = act(torch.nn.functional.linear(h, params[i], params[i + 1]))
    return torch.nn.functional.linear(h, params[-2], params[-1])


class _NativeMLP(torch.autograd.Function):
    """Autograd wrapper of the fused native ReLU MLP. A backward that must itself be differentiable
    (``create_graph``, e.g. an eikonal loss) differentiates the torch twin instead."""

    @staticmethod
    def forward(ctx, lib, h, *params):
        weights, biases = list(params[0::2]), list(params[1::2])
        y, hidden = lib.forward(h.contiguous(), weights, biases)
        ctx.save_for_backward(h, hidden, *params)  # h itself, not a copy: a double backward differentiates it
        ctx.lib = lib
        return y

    @staticmethod
    def backward(ctx, grad_y):
        h, hidden, *params = ctx.saved_tensors
        if torch.is_grad_enabled():
            inputs = [t for t in (h, *params) if t.requires_grad]
            grads = iter(torch.autograd.grad(_mlp_layers(h, params, torch.relu), inputs, grad_y, create_graph=True))
            return (None, *(next(grads) if t.requires_grad else None for t in (h, *params)))
        grads = ctx.lib.backward(grad_y.contiguous(), h.contiguous(), hidden, list(params[0::2]), list(params[1::2]),
                                 ctx.needs_input_grad[1])
        return (None, grads[0] if ctx.needs_input_grad[1] else None, *grads[1:])
