"""Real spherical harmonics of unit directions, degree 0..4 (as in Instant-NGP / tiny-cuda-nn)."""

from __future__ import annotations

import torch

from omnifield.backend import native_kernels
from omnifield.fields.encoding import Encoding

_NATIVE_DEGREES = (2, 3, 4)  # degree 1 is a constant (no gradient), 5 stays in torch


def spherical_harmonics(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Real SH basis of unit vectors. ``dirs [..., 3] -> [..., degree**2]`` (degree in 1..5).

    Coefficients follow the standard real SH convention used by 3DGS/tcnn. CPU float32 with degree <= 4
    runs the native kernel (``native/sh_basis.cpp``); everything else, and any derivative of the
    gradient, the torch twin :func:`_spherical_harmonics`.
    """
    if not 1 <= degree <= 5:
        raise ValueError(f"SH degree must be in 1..5, got {degree}")
    lib = native_kernels(dirs, "sh_basis") if degree in _NATIVE_DEGREES and dirs.shape[-1] == 3 else None
    if lib is None:
        return _spherical_harmonics(dirs, degree)
    out = _NativeSphericalHarmonics.apply(lib, dirs.reshape(-1, 3), degree)
    return out if dirs.dim() == 2 else out.reshape(*dirs.shape[:-1], degree * degree)


class _NativeSphericalHarmonics(torch.autograd.Function):
    """``dirs [N, 3] -> [N, degree**2]`` by the native kernel; a backward that must itself be differentiable
    (``create_graph``) differentiates the twin instead."""

    @staticmethod
    def forward(ctx, lib, dirs, degree):
        ctx.save_for_backward(dirs)
        ctx.lib, ctx.degree = lib, degree
        return lib.forward(dirs, degree)

    @staticmethod
    def backward(ctx, grad):
        (dirs,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            (grad_dirs,) = torch.autograd.grad(_spherical_harmonics(dirs, ctx.degree), dirs, grad, create_graph=True)
        else:
            grad_dirs = ctx.lib.backward(grad, dirs, ctx.degree)
        return None, grad_dirs, None


def _spherical_harmonics(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """The torch twin of :func:`spherical_harmonics` (any device, dtype and derivative order)."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree > 1:
        out += [-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x]
    if degree > 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [
            1.0925484305920792 * xy,
            -1.0925484305920792 * yz,
            0.94617469575755997 * zz - 0.31539156525251999,
            -1.0925484305920792 * xz,
            0.54627421529603959 * (xx - yy),
        ]
    if degree > 3:
        out += [
            0.59004358992664352 * y * (-3.0 * xx + yy),
            2.8906114426405538 * xy * z,
            0.45704579946446572 * y * (1.0 - 5.0 * zz),
            0.3731763325901154 * z * (5.0 * zz - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * zz),
            1.4453057213202769 * z * (xx - yy),
            0.59004358992664352 * x * (-xx + 3.0 * yy),
        ]
    if degree > 4:
        out += [
            2.5033429417967046 * xy * (xx - yy),
            1.7701307697799304 * yz * (-3.0 * xx + yy),
            0.94617469575756008 * xy * (7.0 * zz - 1.0),
            0.66904654355728921 * yz * (3.0 - 7.0 * zz),
            3.7024941420321507 * zz * zz - 3.1735664074561294 * zz + 0.31735664074561293,
            0.66904654355728921 * xz * (3.0 - 7.0 * zz),
            0.47308734787878004 * (xx - yy) * (7.0 * zz - 1.0),
            1.7701307697799304 * xz * (-xx + 3.0 * yy),
            0.62583573544917614 * (xx * (xx - 3.0 * yy) - yy * (3.0 * xx - yy)),
        ]
    return torch.stack(out, dim=-1)


class SphericalHarmonics(Encoding):
    """Direction encoding: unit ``d [N, 3] -> [N, degree**2]``. Takes directions, not unit-cube points."""

    def __init__(self, degree: int = 4):
        super().__init__()
        self.degree = degree
        self.n_input_dims = 3
        self.n_output_dims = degree * degree

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return spherical_harmonics(x, self.degree)
