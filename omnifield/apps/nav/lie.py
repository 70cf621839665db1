"""SO(3)/SE(3) helpers: hat/vee, exponential and logarithm maps (batched, differentiable)."""

from __future__ import annotations

import torch


def hat(w: torch.Tensor) -> torch.Tensor:
    """Skew matrices ``[..., 3, 3]`` of vectors ``[..., 3]`` (``hat(w) @ v == w x v``)."""
    z = torch.zeros_like(w[..., 0])
    return torch.stack(
        [torch.stack([z, -w[..., 2], w[..., 1]], -1),
         torch.stack([w[..., 2], z, -w[..., 0]], -1),
         torch.stack([-w[..., 1], w[..., 0], z], -1)],
        dim=-2,
    )


def vee(m: torch.Tensor) -> torch.Tensor:
    """Vector ``[..., 3]`` of the skew-symmetric part of ``m [..., 3, 3]``."""
    return 0.5 * torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)


def so3_exp(w: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` from axis-angle vectors ``[..., 3]`` (Rodrigues)."""
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    k = hat(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def so3_log(r: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors ``[..., 3]`` of rotations ``[..., 3, 3]`` (angles below pi)."""
    cos = ((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.acos(cos)[..., None]
    scale = torch.where(theta < 1e-4, 1 + theta**2 / 6, theta / torch.sin(theta))
    return vee(r) * scale


def se3_exp(xi: torch.Tensor) -> torch.Tensor:
    """Homogeneous transforms ``[..., 4, 4]`` from twists ``xi = (rho, w) [..., 6]``."""
    rho, w = xi[..., :3], xi[..., 3:]
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    c = torch.where(small, 1.0 / 6 - theta2 / 120, (theta - torch.sin(theta)) / (theta2 * theta).clamp_min(1e-12))
    k = hat(w)
    eye = torch.eye(3, dtype=xi.dtype, device=xi.device).expand_as(k)
    v = eye + b * k + c * (k @ k)
    top = torch.cat([so3_exp(w), (v @ rho[..., None])], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def rotation_angle_deg(r_a: torch.Tensor, r_b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees ``[...]`` of the relative rotation between ``[..., 3, 3]`` rotations."""
    return torch.rad2deg(so3_log(r_a.transpose(-1, -2) @ r_b).norm(dim=-1))
