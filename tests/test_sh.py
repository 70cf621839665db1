"""Spherical-harmonics basis: orthonormal on the sphere, native kernel against the torch twin."""

from __future__ import annotations

import math

import pytest
import torch

from omnifield.fields.sh import _spherical_harmonics, spherical_harmonics
from tests._native import native_or_skip


def _fibonacci_sphere(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    r = (1 - z * z).sqrt()
    golden = math.pi * (3.0 - 5.0**0.5)
    return torch.stack([r * torch.cos(golden * i), r * torch.sin(golden * i), z], dim=-1)


@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5])
def test_basis_is_orthonormal_on_the_sphere(degree):
    dirs = _fibonacci_sphere(20000)
    basis = spherical_harmonics(dirs, degree)  # float64: the twin
    gram = basis.T @ basis * (4 * math.pi / len(dirs))
    torch.testing.assert_close(gram, torch.eye(degree * degree, dtype=torch.float64), atol=2e-4, rtol=0)


@pytest.mark.parametrize("degree", [2, 3, 4])
@pytest.mark.parametrize("shape", [(1000, 3), (7, 33, 3)])
def test_native_matches_the_twin_with_gradients(degree, shape):
    native_or_skip("sh_basis")
    dirs = torch.nn.functional.normalize(torch.randn(shape, generator=torch.Generator().manual_seed(degree)), dim=-1)
    weights = torch.randn(*shape[:-1], degree * degree)
    results = []
    for fn in (spherical_harmonics, _spherical_harmonics):
        leaf = dirs.clone().requires_grad_()
        out = fn(leaf, degree)
        (out * weights).sum().backward()
        results.append((out, leaf.grad))
        if fn is spherical_harmonics and len(shape) == 2:
            assert type(out.grad_fn).__name__ == "_NativeSphericalHarmonicsBackward"  # the kernel ran
    for native, twin in zip(*results):
        torch.testing.assert_close(native, twin, rtol=1e-5, atol=1e-5)


def test_native_backward_can_be_differentiated_again():
    native_or_skip("sh_basis")
    dirs = torch.nn.functional.normalize(torch.randn(200, 3), dim=-1)
    second = []
    for fn in (spherical_harmonics, _spherical_harmonics):
        leaf = dirs.clone().requires_grad_()
        (grad,) = torch.autograd.grad((fn(leaf, 4) ** 2).sum(), leaf, create_graph=True)
        (again,) = torch.autograd.grad(grad.square().sum(), leaf)
        second.append(again)
    torch.testing.assert_close(second[0], second[1], rtol=1e-4, atol=1e-4)
