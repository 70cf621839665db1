"""Lens distortion in normalised image coordinates (x right, y down, z = 1 plane).

Coefficients ``[R, 6] = (k1, k2, k3, k4, p1, p2)``. The radial-tangential model is OpenCV's
(radial polynomial up to r^8); the fisheye model is OpenCV's equidistant one (k1..k4 on the angle).
"""

from __future__ import annotations

import torch

_ITERATIONS = 10


def _radial_tangential(x, y, k):
    """Distorted ``(xd, yd)`` and the 2x2 Jacobian entries of the OpenCV radial-tangential model."""
    k1, k2, k3, k4, p1, p2 = k
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
    d_radial = k1 + r2 * (2 * k2 + r2 * (3 * k3 + r2 * 4 * k4))  # d radial / d r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    jxx = radial + 2 * x * x * d_radial + 2 * p1 * y + 6 * p2 * x
    jxy = 2 * x * y * d_radial + 2 * p1 * x + 2 * p2 * y
    jyy = radial + 2 * y * y * d_radial + 6 * p1 * y + 2 * p2 * x
    return xd, yd, jxx, jxy, jyy


def _fisheye_theta_d(theta, k):
    k1, k2, k3, k4 = k[:4]
    t2 = theta * theta
    return theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))


def _columns(coeffs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``[R, 6]`` -> six contiguous ``[R]`` coefficient vectors (fast element-wise maths)."""
    return tuple(coeffs.expand(-1, 6).T.contiguous())


def distort(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor, fisheye: bool = False):
    """Apply the lens model to undistorted normalised points ``x, y [R]``; returns ``(xd, yd)``."""
    coeffs = _columns(coeffs)
    if fisheye:
        r = torch.sqrt(x * x + y * y).clamp_min(1e-12)
        scale = _fisheye_theta_d(torch.atan(r), coeffs) / r
        return x * scale, y * scale
    xd, yd, *_ = _radial_tangential(x, y, coeffs)
    return xd, yd


def undistort(xd: torch.Tensor, yd: torch.Tensor, coeffs: torch.Tensor, fisheye: bool = False):
    """Invert :func:`distort` by Newton's method: distorted ``xd, yd [R]`` -> undistorted ``(x, y)``."""
    coeffs = _columns(coeffs)
    if fisheye:
        theta_d = torch.sqrt(xd * xd + yd * yd)
        theta = theta_d.clone()
        k1, k2, k3, k4 = coeffs[:4]
        for _ in range(_ITERATIONS):
            t2 = theta * theta
            derivative = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
            theta = theta - (_fisheye_theta_d(theta, coeffs) - theta_d) / derivative
        theta = theta.clamp(0.0, torch.pi / 2 - 1e-4)
        scale = torch.where(theta_d > 1e-12, torch.tan(theta) / theta_d.clamp_min(1e-12), torch.ones_like(theta_d))
        return xd * scale, yd * scale
    x, y = xd.clone(), yd.clone()
    for _ in range(_ITERATIONS):
        fx, fy, jxx, jxy, jyy = _radial_tangential(x, y, coeffs)
        ex, ey = fx - xd, fy - yd
        det = jxx * jyy - jxy * jxy
        det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
        x = x - (jyy * ex - jxy * ey) / det
        y = y - (jxx * ey - jxy * ex) / det
    return x, y
