"""Camera rays: centre pixel looks down -z of the camera; projection round trip."""

import math

import torch

from omnifield.renderers.cameras import Cameras, look_at, orbit_cameras
from omnifield.renderers.rays import ray_aabb_intersect


def test_centre_ray_and_projection_round_trip():
    eye = torch.tensor([[1.0, -3.0, 2.0]])
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    cams = Cameras.from_fov(c2w, 0.6, 80, 60)
    o, d = cams.generate_rays(torch.tensor([0]), torch.tensor([40.0]), torch.tensor([30.0]))
    assert torch.allclose(d[0], -eye[0] / eye[0].norm(), atol=1e-6)
    # a pixel's ray passes through a point that projects back to that pixel
    px, py = torch.tensor([7.5]), torch.tensor([51.5])
    o, d = cams.generate_rays(torch.tensor([0]), px, py)
    p = o + 2.5 * d
    w2c = torch.linalg.inv(c2w[0])
    pc = w2c[:3, :3] @ p[0] + w2c[:3, 3]
    u = cams.fx[0] * pc[0] / -pc[2] + cams.cx[0]
    v = -cams.fy[0] * pc[1] / -pc[2] + cams.cy[0]
    assert abs(float(u) - 7.5) < 1e-3 and abs(float(v) - 51.5) < 1e-3
    assert abs(float(cams.fx[0]) - 0.5 * 80 / math.tan(0.3)) < 1e-4


def test_ray_aabb():
    o = torch.tensor([[0.0, 0.0, -5.0], [5.0, 5.0, 5.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    near, far = ray_aabb_intersect(o, d, torch.tensor([-1.0, -1, -1, 1, 1, 1]))
    assert torch.allclose(near[0], torch.tensor(4.0)) and torch.allclose(far[0], torch.tensor(6.0))
    assert near[1] >= far[1]


def test_orbit_keeps_radius_and_looks_at_centre():
    eye = torch.tensor([[4.0, 0.0, 1.0], [0.0, 4.0, 1.0]])
    ref = Cameras.from_fov(look_at(eye, torch.zeros(3), torch.tensor([0.0, 0, 1])), 0.7, 32, 32)
    orbit = orbit_cameras(ref, 12)
    centres = orbit.c2w[:, :3, 3]
    assert torch.allclose(centres[:, :2].norm(dim=-1), torch.full((12,), 4.0), atol=1e-5)
    fwd = -orbit.c2w[:, :3, 2]
    assert torch.allclose(fwd, -centres / centres.norm(dim=-1, keepdim=True), atol=1e-5)


def test_orbit_around_another_axis_and_centre():
    target, up = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 1.0, 0.0])
    eye = target + torch.tensor([[3.0, 0.5, 0.0], [0.0, 0.5, -3.0]])
    ref = Cameras.from_fov(look_at(eye, target, up), 0.7, 32, 32)
    orbit = orbit_cameras(ref, 8, target, up)
    rel = orbit.c2w[:, :3, 3] - target
    assert torch.allclose(rel[:, 1], torch.full((8,), 0.5), atol=1e-5)  # the mean height along the up axis
    assert torch.allclose(rel[:, [0, 2]].norm(dim=-1), torch.full((8,), 3.0), atol=1e-5)
    assert torch.allclose(-orbit.c2w[:, :3, 2], -rel / rel.norm(dim=-1, keepdim=True), atol=1e-5)


def test_spiral_stays_among_the_cameras_and_looks_at_the_focus():
    from omnifield.renderers.cameras import spiral_cameras

    eye = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 3), torch.linspace(-1, 1, 3), indexing="ij"), -1)
    eye = torch.cat([eye.reshape(-1, 2), torch.zeros(9, 1)], -1)  # a 3x3 grid of cameras in the z = 0 plane
    ref = Cameras.from_fov(look_at(eye, torch.tensor([0.0, 0.0, -100.0]), torch.tensor([0.0, 1.0, 0.0])), 0.7, 32, 32)
    path = spiral_cameras(ref, 30, focus_distance=10.0)
    centres = path.c2w[:, :3, 3]
    assert float(centres[:, :2].abs().max()) <= 1.0 + 1e-5 and float(centres[:, 2].abs().max()) < 1e-5
    to_focus = torch.tensor([0.0, 0.0, -10.0]) - centres
    assert torch.allclose(-path.c2w[:, :3, 2], to_focus / to_focus.norm(dim=-1, keepdim=True), atol=1e-5)
