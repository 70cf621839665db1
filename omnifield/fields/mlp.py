"""Fully connected decoders."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from omnifield.backend import native_kernels, resolve_implementation, wide_vector_registers
from omnifield.config import register_config

INFERENCE_BLOCK_ROWS = 8192  # rows per block of a no-grad CPU forward (see MLP.modulated)

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
    the layer-by-layer torch code below is its twin and runs everywhere else. Without autograd on the CPU
    the torch layers run ``INFERENCE_BLOCK_ROWS`` rows at a time, so each block's activations stay in cache
    instead of a fresh ``[N, width]`` buffer per layer (the colour MLP 31 -> 64 -> 64 -> 3 over ~1M rows on
    2 cores: 585-675 ms whole, ~140 ms in blocks).
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
        lead = h.shape[:-1]
        return self.modulated(h.reshape(-1, h.shape[-1])).reshape(*lead, self.n_out)

    def modulated(self, h: torch.Tensor, modulation: torch.Tensor | None = None,
                  layer_norm: bool = False) -> torch.Tensor:
        """``h [N, n_in] -> [N, n_out]`` (output activation applied), the first ``M`` hidden layers modulated
        per row by ``modulation [N, 2, M, width]`` (scale offsets, then shifts; see :func:`_mlp_layers`)."""
        params = self._layer_parameters()
        tensors = params if modulation is None else [*params, modulation]
        on_cpu = all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu") for t in [h, *tensors])
        fused = self.fusable and h.shape[-1] == self.n_in and wide_vector_registers()
        lib = native_kernels(h, "mlp") if on_cpu and (fused or modulation is not None) else None
        if lib is not None and fused:
            return self.out_act(_NativeMLP.apply(lib, h, modulation, layer_norm, *params))
        if modulation is None and h.device.type == "cpu" and not torch.is_grad_enabled():
            return self.out_act(_mlp_layers_blocked(h, params, self.act))
        return self.out_act(_mlp_layers(h, params, self.act, modulation, layer_norm, lib))

    def twin(self, h: torch.Tensor) -> torch.Tensor:
        """The layers one by one in torch, without the output activation: ``[..., n_in] -> [..., n_out]``."""
        return _mlp_layers(h, self._layer_parameters(), self.act)

    def _layer_parameters(self) -> list[torch.Tensor | None]:
        return [t for layer in self.layers for t in (layer.weight, layer.bias)]


def _mlp_layers(h: torch.Tensor, params: list[torch.Tensor | None], act,
                modulation: torch.Tensor | None = None, layer_norm: bool = False, lib=None) -> torch.Tensor:
    """Torch layers over ``params = [w0, b0, w1, b1, ...]`` (biases may be ``None``), ``act`` between them.

    With ``modulation [N, 2, M, W]`` (rows of ``h [N, n_in]``), hidden layer ``l < M`` becomes
    ``act((1 + modulation[:, 0, l]) * norm(h W_l^T + b_l) + modulation[:, 1, l])``, ``norm`` a parameter-free
    layer norm when ``layer_norm`` else the identity: coordinate-aware modulation (CAM). The modulation runs
    in the native kernel ``lib`` when given (one pass forward and backward instead of five torch ops).
    """
    n_modulated = 0 if modulation is None else modulation.shape[2]
    for layer, i in enumerate(range(0, len(params) - 2, 2)):
        h = torch.nn.functional.linear(h, params[i], params[i + 1])
        if layer < n_modulated:
            h = _modulate(h, modulation, layer, layer_norm, lib)
        h = act(h)
    return torch.nn.functional.linear(h, params[-2], params[-1])


def _mlp_layers_blocked(h: torch.Tensor, params: list[torch.Tensor | None], act) -> torch.Tensor:
    """:func:`_mlp_layers` without modulation, ``INFERENCE_BLOCK_ROWS`` rows of ``h [N, n_in]`` at a time
    -> ``[N, n_out]`` (for no-grad forwards: the activations of one block fit in cache)."""
    rows = INFERENCE_BLOCK_ROWS
    if h.shape[0] <= rows:
        return _mlp_layers(h, params, act)
    out = h.new_empty(h.shape[0], params[-2].shape[0])
    for first in range(0, h.shape[0], rows):
        out[first:first + rows] = _mlp_layers(h[first:first + rows], params, act)
    return out


def _modulate(h: torch.Tensor, modulation: torch.Tensor, layer: int, layer_norm: bool, lib=None) -> torch.Tensor:
    """``(1 + modulation[:, 0, layer]) * norm(h) + modulation[:, 1, layer]`` for ``h [N, W]``; the native
    kernel ``lib`` when given, else torch (differentiable to any order)."""
    if lib is not None:
        return _NativeModulation.apply(lib, h, modulation, layer, layer_norm)
    if layer_norm:
        h = torch.nn.functional.layer_norm(h, (h.shape[-1],))
    return (1.0 + modulation[:, 0, layer]) * h + modulation[:, 1, layer]


class _NativeModulation(torch.autograd.Function):
    """One modulated layer in the native kernel: ``(lib, h [N, W], modulation [N, 2, M, W], layer, layer_norm)
    -> [N, W]``; a backward that must itself be differentiable differentiates the torch version."""

    @staticmethod
    def forward(ctx, lib, h, modulation, layer, layer_norm):
        out, normalized, rstd = lib.modulation_forward(h, modulation.contiguous(), layer, layer_norm)
        ctx.save_for_backward(h, modulation, normalized, rstd)  # the inputs themselves: see _NativeMLP
        ctx.lib, ctx.layer, ctx.layer_norm = lib, layer, layer_norm
        return out

    @staticmethod
    def backward(ctx, grad_out):
        h, modulation, normalized, rstd = ctx.saved_tensors
        if torch.is_grad_enabled():
            h_alias, mod_alias = h.view_as(h), modulation.view_as(modulation)
            out = _modulate(h_alias, mod_alias, ctx.layer, ctx.layer_norm)
            grad_h, grad_mod = torch.autograd.grad(out, (h_alias, mod_alias), grad_out, create_graph=True)
        else:
            grad_h, grad_mod = ctx.lib.modulation_backward(grad_out, modulation.contiguous(), normalized, rstd,
                                                           ctx.layer, ctx.layer_norm)
        return None, grad_h, grad_mod, None, None


class _NativeMLP(torch.autograd.Function):
    """Autograd wrapper of the fused native ReLU MLP: ``(lib, h [N, n_in], modulation [N, 2, M, W] or None,
    layer_norm, w0, b0, ...) -> [N, n_out]``. A backward that must itself be differentiable
    (``create_graph``, e.g. an eikonal loss) differentiates the torch twin instead."""

    @staticmethod
    def forward(ctx, lib, h, modulation, layer_norm, *params):
        weights, biases = list(params[0::2]), list(params[1::2])
        mod = h.new_empty(0) if modulation is None else modulation
        y, hidden, normalized, rstd = lib.forward(h.contiguous(), weights, biases, mod.contiguous(), layer_norm)
        # h and the modulation themselves, not copies: a double backward differentiates them
        ctx.save_for_backward(h, mod, hidden, normalized, rstd, *params)
        ctx.lib, ctx.modulated, ctx.layer_norm = lib, modulation is not None, layer_norm
        return y

    @staticmethod
    def backward(ctx, grad_y):
        h, mod, hidden, normalized, rstd, *params = ctx.saved_tensors
        need_h, need_mod = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        if torch.is_grad_enabled():
            modulation = mod if ctx.modulated else None
            wanted = [(h, need_h), (modulation, need_mod), *((p, p.requires_grad) for p in params)]
            inputs = [t for t, need in wanted if need]
            y = _mlp_layers(h, params, torch.relu, modulation, ctx.layer_norm)
            grads = iter(torch.autograd.grad(y, inputs, grad_y, create_graph=True))
            return (None, *(next(grads) if need else None for _, need in wanted[:2]), None,
                    *(next(grads) if need else None for _, need in wanted[2:]))
        grads = ctx.lib.backward(grad_y.contiguous(), h.contiguous(), hidden, list(params[0::2]), list(params[1::2]),
                                 need_h, mod.contiguous(), ctx.layer_norm, normalized, rstd)
        return (None, grads[0] if need_h else None, grads[1] if need_mod else None, None, *grads[2:])
