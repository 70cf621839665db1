"""Pinhole cameras and ray generation (OpenGL convention: x right, y up, looking down -z)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Cameras:
    """A set of pinhole cameras sharing one image size.

    c2w: ``[N, 4, 4]`` camera-to-world; fx, fy, cx, cy: ``[N]`` in pixels; width, height: ints.
    distortion: optional ``[N, 6]`` lens coefficients ``(k1, k2, k3, k4, p1, p2)`` of the OpenCV
    radial-tangential model (``fisheye=True``: the OpenCV fisheye model, k1..k4 only); None = ideal pinhole.
    """

    c2w: torch.Tensor  # [N, 4, 4]
    fx: torch.Tensor  # [N]
    fy: torch.Tensor  # [N]
    cx: torch.Tensor  # [N]
    cy: torch.Tensor  # [N]
    width: int
    height: int
    distortion: torch.Tensor | None = None  # [N, 6] (k1, k2, k3, k4, p1, p2)
    fisheye: bool = False

    def __len__(self) -> int:
        return self.c2w.shape[0]

    @classmethod
    def from_fov(cls, c2w: torch.Tensor, camera_angle_x: float, width: int, height: int) -> "Cameras":
        """Blender-style cameras: focal ``0.5 * W / tan(0.5 * camera_angle_x)``, centred principal point."""
        n = c2w.shape[0]
        focal = 0.5 * width / math.tan(0.5 * camera_angle_x)
        full = lambda v: torch.full((n,), float(v), dtype=torch.float32)  # noqa: E731
        return cls(c2w.float(), full(focal), full(focal), full(width / 2), full(height / 2), width, height)

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(
            self.c2w.to(device), self.fx.to(device), self.fy.to(device),
            self.cx.to(device), self.cy.to(device), self.width, self.height,
            None if self.distortion is None else self.distortion.to(device), self.fisheye,
        )

    def __getitem__(self, idx) -> "Cameras":
        sel = lambda t: t[idx].reshape(-1, *t.shape[1:])  # noqa: E731
        return Cameras(sel(self.c2w), sel(self.fx), sel(self.fy), sel(self.cx), sel(self.cy), self.width, self.height,
                       None if self.distortion is None else sel(self.distortion), self.fisheye)

    def generate_rays(
        self,
        cam_idx: torch.Tensor,  # [R] int64
        px: torch.Tensor,  # [R] float, pixel x (0.5 = centre of the first column)
        py: torch.Tensor,  # [R] float, pixel y (0.5 = centre of the first row)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """World-space ray origins ``[R, 3]`` and unit directions ``[R, 3]`` (lens distortion undone)."""
        u = (px - self.cx[cam_idx]) / self.fx[cam_idx]
        v = (py - self.cy[cam_idx]) / self.fy[cam_idx]
        if self.distortion is not None:
            from omnifield.renderers.distortion import undistort

            u, v = undistort(u, v, self.distortion[cam_idx], self.fisheye)
        dirs_cam = torch.stack([u, -v, -torch.ones_like(px)], dim=-1)
        rot = self.c2w[cam_idx, :3, :3]
        dirs = torch.einsum("rij,rj->ri", rot, dirs_cam)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        origins = self.c2w[cam_idx, :3, 3]
        return origins, dirs

    def image_rays(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All pixel-centre rays of camera ``i``: origins and directions ``[H*W, 3]`` (row-major)."""
        device = self.c2w.device
        ys, xs = torch.meshgrid(
            torch.arange(self.height, device=device, dtype=torch.float32) + 0.5,
            torch.arange(self.width, device=device, dtype=torch.float32) + 0.5,
            indexing="ij",
        )
        idx = torch.full((self.height * self.width,), i, dtype=torch.long, device=device)
        return self.generate_rays(idx, xs.reshape(-1), ys.reshape(-1))


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Camera-to-world ``[N, 4, 4]`` (OpenGL axes) for eyes ``[N, 3]`` looking at ``target [3]``, ``up [3]``
    roughly up; in the dtype and on the device of ``eye``."""
    forward = target[None] - eye
    forward = forward / forward.norm(dim=-1, keepdim=True)
    right = torch.cross(forward, up.expand_as(forward), dim=-1)
    right = right / right.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    true_up = torch.cross(right, forward, dim=-1)
    c2w = torch.eye(4, dtype=eye.dtype, device=eye.device).repeat(eye.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, true_up, -forward, eye
    return c2w


def _with_first_intrinsics(reference: Cameras, c2w: torch.Tensor) -> Cameras:
    """Cameras ``c2w [N, 4, 4]`` with the intrinsics and image size of the first reference camera."""
    rep = lambda t: t[:1].expand(len(c2w)).clone()  # noqa: E731
    return Cameras(c2w, rep(reference.fx), rep(reference.fy), rep(reference.cx), rep(reference.cy), reference.width,
                   reference.height)


def orbit_cameras(reference: Cameras, n_frames: int, target: torch.Tensor | None = None,
                  up: torch.Tensor | None = None) -> Cameras:
    """``n_frames`` cameras on a circle around the ``up`` axis (default z) through ``target`` (default the
    origin), at the mean radius and height of ``reference``. The intrinsics of the first reference camera are
    reused."""
    target = torch.zeros(3) if target is None else target.float()
    up = torch.tensor([0.0, 0.0, 1.0]) if up is None else up.float() / up.float().norm()
    a = torch.tensor([1.0, 0.0, 0.0]) if float(up[0].abs()) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    a = a - (a @ up) * up
    a = a / a.norm()
    b = torch.linalg.cross(up, a)
    rel = reference.c2w[:, :3, 3] - target
    height = (rel @ up).mean()
    radius = (rel - (rel @ up)[:, None] * up).norm(dim=-1).mean()
    angles = torch.linspace(0, 2 * math.pi, n_frames + 1)[:-1]
    eye = target + radius * (torch.cos(angles)[:, None] * a + torch.sin(angles)[:, None] * b) + height * up
    return _with_first_intrinsics(reference, look_at(eye, target, up))


def spiral_cameras(reference: Cameras, n_frames: int, focus_distance: float) -> Cameras:
    """A forward-facing capture's video path (LLFF's spiral): ``n_frames`` cameras circling twice around the
    mean camera position in the plane of the views (radii: the 90th percentile of the cameras' offsets),
    moving in depth once, all looking at the point ``focus_distance`` ahead of the mean camera."""
    c2w = reference.c2w.double()
    centre = c2w[:, :3, 3].mean(0)
    forward = -c2w[:, :3, 2].mean(0)
    forward = forward / forward.norm()
    up = c2w[:, :3, 1].mean(0)
    up = up - (up @ forward) * forward
    up = up / up.norm()
    right = torch.linalg.cross(forward, up)
    rel = c2w[:, :3, 3] - centre
    radii = torch.quantile(torch.stack([rel @ right, rel @ up, rel @ forward], -1).abs(), 0.9, dim=0)
    angles = torch.linspace(0, 4 * math.pi, n_frames + 1, dtype=torch.float64)[:-1]
    eye = centre + (radii[0] * torch.cos(angles))[:, None] * right + (radii[1] * torch.sin(angles))[:, None] * up \
        + (radii[2] * torch.sin(0.5 * angles))[:, None] * forward
    target = centre + focus_distance * forward
    return _with_first_intrinsics(reference, look_at(eye.float(), target.float(), up.float()))
