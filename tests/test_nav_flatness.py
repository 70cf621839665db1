"""Differential flatness reproduces the known controls of analytic trajectories."""

import math

import torch

from omnifield.apps.nav.flatness import QuadrotorParams, flat_to_state
from omnifield.apps.nav.lie import hat, rotation_angle_deg, se3_exp, so3_exp, so3_log

PARAMS = QuadrotorParams(mass=0.8, inertia=(0.01, 0.015, 0.02), gravity=9.81)


def test_hover_needs_weight_as_thrust_and_no_rotation():
    t = torch.linspace(0, 2, 41, dtype=torch.float64)
    p = torch.zeros(41, 3, dtype=torch.float64) + torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64)
    yaw = torch.full_like(t, 0.7)
    s = flat_to_state(p, yaw, float(t[1] - t[0]), PARAMS)
    torch.testing.assert_close(s.thrust, torch.full_like(t, 0.8 * 9.81))
    torch.testing.assert_close(s.body_rate, torch.zeros_like(p))
    torch.testing.assert_close(s.rotation[0], so3_exp(torch.tensor([0, 0, 0.7], dtype=torch.float64)))


def test_coordinated_circle_controls():
    """Flying a circle of radius r at rate w while facing along the path: the whole vehicle turns at w about
    world z, so thrust = m sqrt(r^2 w^4 + g^2), body rate = R^T (0, 0, w) and torque = w x J w."""
    r, w, dt = 1.5, 1.2, 0.002
    t = torch.arange(0, 3, dt, dtype=torch.float64)
    p = torch.stack([r * torch.cos(w * t), r * torch.sin(w * t), torch.full_like(t, 2.0)], -1)
    yaw = w * t + math.pi / 2
    s = flat_to_state(p, yaw, dt, PARAMS)
    thrust = PARAMS.mass * math.sqrt(r**2 * w**4 + 9.81**2)
    torch.testing.assert_close(s.thrust, torch.full_like(t, thrust), rtol=1e-4, atol=1e-4)
    rate = s.rotation.transpose(-1, -2) @ torch.tensor([0.0, 0.0, w], dtype=torch.float64)
    torch.testing.assert_close(s.body_rate[3:-3], rate[3:-3], rtol=0, atol=1e-4)
    inertia = torch.tensor(PARAMS.inertia, dtype=torch.float64)
    torque = torch.cross(rate, inertia * rate, dim=-1)
    torch.testing.assert_close(s.torque[4:-4], torque[4:-4], rtol=0, atol=1e-4)
    # banked towards the centre of the circle: tilt angle = atan(r w^2 / g)
    tilt = torch.rad2deg(torch.acos(s.rotation[:, 2, 2]))
    torch.testing.assert_close(tilt, torch.full_like(t, math.degrees(math.atan(r * w**2 / 9.81))), rtol=0, atol=1e-3)


def test_general_trajectory_matches_analytic_derivatives():
    """A figure-eight with varying yaw: rates from a plain reference that differentiates the exact
    rotation R(t) (from the analytic acceleration) with a tiny central difference."""
    dt = 0.001
    t = torch.arange(0, 2, dt, dtype=torch.float64)

    def pos(t):
        return torch.stack([torch.sin(t), 0.5 * torch.sin(2 * t), 0.2 * t**2], -1)

    def acc(t):
        return torch.stack([-torch.sin(t), -2 * torch.sin(2 * t), torch.full_like(t, 0.4)], -1)

    def rot(t):
        a = acc(t) + torch.tensor([0, 0, 9.81], dtype=torch.float64)
        z = a / a.norm(dim=-1, keepdim=True)
        yaw = 0.3 * torch.sin(3 * t)
        xc = torch.stack([torch.cos(yaw), torch.sin(yaw), torch.zeros_like(yaw)], -1)
        y = torch.cross(z, xc, dim=-1)
        y = y / y.norm(dim=-1, keepdim=True)
        return torch.stack([torch.cross(y, z, dim=-1), y, z], -1)

    s = flat_to_state(pos(t), 0.3 * torch.sin(3 * t), dt, PARAMS)
    h = 1e-5
    r_dot = (rot(t + h) - rot(t - h)) / (2 * h)
    m = rot(t).transpose(-1, -2) @ r_dot
    ref_rate = torch.stack([m[:, 2, 1], m[:, 0, 2], m[:, 1, 0]], -1)
    torch.testing.assert_close(s.body_rate[3:-3], ref_rate[3:-3], rtol=0, atol=1e-4)
    thrust = PARAMS.mass * (acc(t) + torch.tensor([0, 0, 9.81], dtype=torch.float64)).norm(dim=-1)
    torch.testing.assert_close(s.thrust[1:-1], thrust[1:-1], rtol=1e-5, atol=1e-5)


def test_lie_maps_round_trip():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(50, 3, generator=g, dtype=torch.float64)
    w = w / w.norm(dim=-1, keepdim=True) * torch.rand(50, 1, generator=g, dtype=torch.float64) * 3.0
    torch.testing.assert_close(so3_log(so3_exp(w)), w, atol=1e-6, rtol=0)
    r = so3_exp(w)
    torch.testing.assert_close(r @ r.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(50, 3, 3))
    assert float(rotation_angle_deg(r, r).max()) < 1e-3
    xi = torch.randn(7, 6, generator=g, dtype=torch.float64)
    twist = torch.zeros(7, 4, 4, dtype=torch.float64)
    twist[:, :3, :3] = hat(xi[:, 3:])
    twist[:, :3, 3] = xi[:, :3]
    torch.testing.assert_close(se3_exp(xi), torch.linalg.matrix_exp(twist))
