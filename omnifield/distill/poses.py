"""Cameras to distil from: random poses on a sphere around the scene, joined with the training cameras."""

from __future__ import annotations

import math

import torch

from omnifield.renderers.cameras import Cameras, look_at


def sphere_cameras(reference: Cameras, n: int, generator: torch.Generator, max_elevation_deg: float = 65.0,
                   centre: torch.Tensor | None = None) -> Cameras:
    """``n`` cameras at uniformly random points of a sphere (elevation within ``±max_elevation_deg``)
    looking at ``centre``; radius = mean distance of the ``reference`` cameras, their first intrinsics."""
    centre = torch.zeros(3) if centre is None else centre
    radius = (reference.c2w[:, :3, 3] - centre).norm(dim=-1).mean()
    z_max = math.sin(math.radians(max_elevation_deg))
    z = (2 * torch.rand(n, generator=generator) - 1) * z_max  # uniform z = uniform area on the sphere band
    phi = 2 * math.pi * torch.rand(n, generator=generator)
    r_xy = (1 - z**2).sqrt()
    eye = torch.stack([r_xy * torch.cos(phi), r_xy * torch.sin(phi), z], dim=-1) * radius + centre
    c2w = look_at(eye, centre, torch.tensor([0.0, 0.0, 1.0]))
    rep = lambda t: t[:1].expand(n).clone()  # noqa: E731
    return Cameras(c2w, rep(reference.fx), rep(reference.fy), rep(reference.cx), rep(reference.cy),
                   reference.width, reference.height)


def join_cameras(a: Cameras, b: Cameras) -> Cameras:
    """All cameras of ``a`` then ``b`` (same image size)."""
    if (a.width, a.height) != (b.width, b.height):
        raise ValueError(f"cannot join cameras of size {a.width}x{a.height} and {b.width}x{b.height}")
    return Cameras(torch.cat([a.c2w, b.c2w]), torch.cat([a.fx, b.fx]), torch.cat([a.fy, b.fy]),
                   torch.cat([a.cx, b.cx]), torch.cat([a.cy, b.cy]), a.width, a.height)
