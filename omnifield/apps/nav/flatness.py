"""Quadrotor differential flatness: sampled position and yaw -> full state and controls.

A quadrotor's flat outputs are position ``p(t)`` and yaw ``psi(t)``. With waypoints sampled every ``dt``
(time derivatives by second-order finite differences, as in Adamkiewicz et al. 2022)::

    v_k = (p_{k+1} - p_{k-1}) / 2dt,  a_k = (p_{k+1} - 2 p_k + p_{k-1}) / dt^2
    t = a + g e_z,  thrust f = m |t|,  z_b = t / |t|
    x_c = (cos psi, sin psi, 0),  y_b = z_b x x_c / |.|,  x_b = y_b x z_b,  R = [x_b y_b z_b]
    body rate between samples w_{k+1/2} = vee(R_k^T (R_{k+1} - R_k)) / dt,  at samples w_k = mean of the two
    torque tau_k = J (w_{k+1/2} - w_{k-1/2}) / dt + w_k x J w_k

Acceleration and rates use compact stencils (not central differences of central differences), which
have no odd-even blind spot: a zig-zag of the waypoints costs thrust and torque.

Everything is differentiable, so a planner can optimise the waypoints through these controls. The
first and last few samples use one-sided stencils and are less accurate (O(dt) for rates and torques).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnifield.apps.nav.lie import vee

GRAVITY = 9.81


@dataclass
class QuadrotorParams:
    """Mass (kg), diagonal inertia (kg m^2) and gravity (m/s^2)."""

    mass: float = 1.0
    inertia: tuple = (0.01, 0.01, 0.02)
    gravity: float = GRAVITY


@dataclass
class FlatState:
    """Full state and controls along a sampled trajectory (``T`` time steps)."""

    position: torch.Tensor  # [..., T, 3]
    velocity: torch.Tensor  # [..., T, 3]
    acceleration: torch.Tensor  # [..., T, 3]
    rotation: torch.Tensor  # [..., T, 3, 3] body-to-world
    thrust: torch.Tensor  # [..., T] newtons along body z
    body_rate: torch.Tensor  # [..., T, 3] rad/s in the body frame
    torque: torch.Tensor  # [..., T, 3] N m in the body frame
    body_rate_half: torch.Tensor  # [..., T - 1, 3] rad/s between consecutive samples


def time_derivative(x: torch.Tensor, dt: float, dim: int) -> torch.Tensor:
    """Central-difference derivative along ``dim`` (one-sided second order at the ends)."""
    return torch.gradient(x, spacing=dt, dim=dim, edge_order=2)[0]


def second_time_derivative(x: torch.Tensor, dt: float) -> torch.Tensor:
    """Compact second difference along dim -2 of ``x [..., T, C]`` (one-sided 4-point stencil at the ends)."""
    mid = (x[..., 2:, :] - 2 * x[..., 1:-1, :] + x[..., :-2, :]) / dt**2
    first = (2 * x[..., 0, :] - 5 * x[..., 1, :] + 4 * x[..., 2, :] - x[..., 3, :]) / dt**2
    last = (2 * x[..., -1, :] - 5 * x[..., -2, :] + 4 * x[..., -3, :] - x[..., -4, :]) / dt**2
    return torch.cat([first[..., None, :], mid, last[..., None, :]], dim=-2)


def _half_to_nodes(h: torch.Tensor) -> torch.Tensor:
    """Values at samples ``[..., T, C]`` from values between samples ``[..., T - 1, C]`` (ends copied)."""
    return torch.cat([h[..., :1, :], 0.5 * (h[..., 1:, :] + h[..., :-1, :]), h[..., -1:, :]], dim=-2)


def rotation_from_acceleration(acceleration: torch.Tensor, yaw: torch.Tensor, gravity: float = GRAVITY) -> torch.Tensor:
    """Body-to-world rotations ``[..., 3, 3]`` that point thrust along ``a + g e_z`` with heading ``yaw [...]``."""
    t = acceleration + torch.tensor([0.0, 0.0, gravity], dtype=acceleration.dtype, device=acceleration.device)
    z_b = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    x_c = torch.stack([torch.cos(yaw), torch.sin(yaw), torch.zeros_like(yaw)], dim=-1)
    y_b = torch.cross(z_b, x_c, dim=-1)
    y_b = y_b / y_b.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    x_b = torch.cross(y_b, z_b, dim=-1)
    return torch.stack([x_b, y_b, z_b], dim=-1)


def flat_to_state(
    position: torch.Tensor,  # [..., T, 3]
    yaw: torch.Tensor,  # [..., T]
    dt: float,
    params: QuadrotorParams | None = None,
) -> FlatState:
    """State and controls of the quadrotor flying through ``position``/``yaw`` sampled every ``dt``."""
    params = params or QuadrotorParams()
    if position.shape[-2] < 4:
        raise ValueError("differential flatness needs at least 4 waypoints")
    velocity = time_derivative(position, dt, dim=-2)
    acceleration = second_time_derivative(position, dt)
    rotation = rotation_from_acceleration(acceleration, yaw, params.gravity)
    gravity = torch.tensor([0.0, 0.0, params.gravity], dtype=position.dtype, device=position.device)
    thrust = params.mass * (acceleration + gravity).norm(dim=-1)
    step = rotation[..., 1:, :, :] - rotation[..., :-1, :, :]
    # R_k^T (R_{k+1} - R_k) as a broadcast sum: tiny 3x3 products are much faster than batched matmul
    body_rate_half = vee((rotation[..., :-1, :, :, None] * step[..., :, None, :]).sum(-3)) / dt
    body_rate = _half_to_nodes(body_rate_half)
    angular_acc = torch.diff(body_rate_half, dim=-2) / dt
    angular_acc = torch.cat([angular_acc[..., :1, :], angular_acc, angular_acc[..., -1:, :]], dim=-2)
    inertia = torch.tensor(params.inertia, dtype=position.dtype, device=position.device)
    torque = inertia * angular_acc + torch.cross(body_rate, inertia * body_rate, dim=-1)
    return FlatState(position, velocity, acceleration, rotation, thrust, body_rate, torque, body_rate_half)
