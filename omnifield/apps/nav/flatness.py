"""Quadrotor differential flatness: sampled position and yaw -> full state and controls.

A quadrotor's flat outputs are position ``p(t)`` and yaw ``psi(t)``. With waypoints sampled every ``dt``
(time derivatives by second-order finite differences, as in Adamkiewicz et al. 2022)::

    a = p'',  t = a + g e_z,  thrust f = m |t|,  z_b = t / |t|
    x_c = (cos psi, sin psi, 0),  y_b = z_b x x_c / |.|,  x_b = y_b x z_b,  R = [x_b y_b z_b]
    body rate w = vee(R^T R'),  torque tau = J w' + w x J w

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


def time_derivative(x: torch.Tensor, dt: float, dim: int) -> torch.Tensor:
    """Second-order finite-difference derivative along ``dim`` (one-sided second order at the ends)."""
    return torch.gradient(x, spacing=dt, dim=dim, edge_order=2)[0]


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
    if position.shape[-2] < 3:
        raise ValueError("differential flatness needs at least 3 waypoints")
    velocity = time_derivative(position, dt, dim=-2)
    acceleration = time_derivative(velocity, dt, dim=-2)
    rotation = rotation_from_acceleration(acceleration, yaw, params.gravity)
    gravity = torch.tensor([0.0, 0.0, params.gravity], dtype=position.dtype, device=position.device)
    thrust = params.mass * (acceleration + gravity).norm(dim=-1)
    rotation_rate = time_derivative(rotation, dt, dim=-3)
    body_rate = vee(rotation.transpose(-1, -2) @ rotation_rate)
    angular_acc = time_derivative(body_rate, dt, dim=-2)
    inertia = torch.tensor(params.inertia, dtype=position.dtype, device=position.device)
    torque = inertia * angular_acc + torch.cross(body_rate, inertia * body_rate, dim=-1)
    return FlatState(position, velocity, acceleration, rotation, thrust, body_rate, torque)
