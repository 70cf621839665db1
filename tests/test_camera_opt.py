"""Pose refinement: the SE(3) exponential map against scipy, exact identity at zero, rays moved as the
refined poses generate them, and recovery of a known pose perturbation on a textured plane."""

import numpy as np
import pytest
import torch
from scipy.linalg import expm
from scipy.spatial.transform import Rotation

from omnifield.renderers.camera_opt import CameraOptimizer, se3_exp
from omnifield.renderers.cameras import Cameras


def _tangents() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    d = torch.randn(8, 6, generator=g, dtype=torch.float64)
    d[1, 3:] *= 1e-3  # inside the Taylor branch
    d[2, 3:] *= 0.0099 / d[2, 3:].norm()  # just below the switch to the closed form
    d[3, 3:] *= 0.0101 / d[3, 3:].norm()  # just above
    d[4, 3:] = 0.0  # pure translation
    d[5, 3:] *= 3.0  # a large angle
    return d


def test_se3_exp_matches_scipy():
    d = _tangents()
    rot_minus_eye, t = se3_exp(d)
    for i in range(d.shape[0]):
        v, w = d[i, :3].numpy(), d[i, 3:].numpy()
        rot = Rotation.from_rotvec(w).as_matrix()
        np.testing.assert_allclose(rot_minus_eye[i].numpy() + np.eye(3), rot, atol=1e-12)
        twist = np.zeros((4, 4))  # the se(3) matrix [[hat(w), v], [0, 0]]
        twist[:3, :3] = [[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]
        twist[:3, 3] = v
        np.testing.assert_allclose(t[i].numpy(), expm(twist)[:3, 3], atol=1e-12)


def test_zero_is_the_identity_with_finite_gradients():
    zero = torch.zeros(3, 6, requires_grad=True)
    rot_minus_eye, t = se3_exp(zero)
    assert torch.equal(rot_minus_eye, torch.zeros(3, 3, 3)) and torch.equal(t, torch.zeros(3, 3))
    (rot_minus_eye.sum() + t.sum()).backward()
    assert torch.isfinite(zero.grad).all()


def _cameras(n: int = 4, size: int = 8) -> Cameras:
    """``n`` cameras 2-3 units above the plane z = 0, looking down (OpenGL: along their -z)."""
    g = torch.Generator().manual_seed(1)
    c2w = torch.eye(4).repeat(n, 1, 1)
    tilt = 0.3 * (torch.rand(n, 3, generator=g) - 0.5)
    c2w[:, :3, :3] = torch.from_numpy(Rotation.from_rotvec(tilt.numpy()).as_matrix()).float()
    c2w[:, :3, 3] = torch.rand(n, 3, generator=g) + torch.tensor([-0.5, -0.5, 2.0])
    return Cameras.from_fov(c2w, 1.4, size, size)


def _all_rays(cams: Cameras):
    ids = torch.arange(len(cams)).repeat_interleave(cams.width * cams.height)
    pix = torch.arange(cams.width * cams.height).repeat(len(cams))
    px, py = (pix % cams.width).float() + 0.5, (pix // cams.width).float() + 0.5
    return ids, px, py


def test_zero_deltas_leave_rays_bit_identical_and_gradients_reach_them():
    cams = _cameras()
    ids, px, py = _all_rays(cams)
    origins, dirs = cams.generate_rays(ids, px, py)
    opt = CameraOptimizer(cams.c2w)
    o2, d2 = opt.apply(ids, origins, dirs)
    assert torch.equal(o2, origins) and torch.equal(d2, dirs)
    (o2.sum() + (d2 * torch.linspace(0, 1, 3)).sum()).backward()
    assert opt.deltas.grad is not None and bool((opt.deltas.grad.abs().sum(-1) > 0).all())


def test_moved_rays_are_the_rays_of_the_refined_poses():
    cams = _cameras()
    ids, px, py = _all_rays(cams)
    opt = CameraOptimizer(cams.c2w)
    with torch.no_grad():
        opt.deltas.copy_(0.1 * torch.randn(len(cams), 6, generator=torch.Generator().manual_seed(2)))
    moved = opt.apply(ids, *cams.generate_rays(ids, px, py))
    refined = Cameras.from_fov(opt.refined_c2w().detach(), 1.4, cams.width, cams.height)
    for a, b in zip(moved, refined.generate_rays(ids, px, py)):
        torch.testing.assert_close(a.detach(), b, atol=1e-5, rtol=1e-5)


def _plane_colour(origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Colour where the rays meet the textured plane z = 0 ``[R, 3]``: smooth, different per channel."""
    t = -origins[:, 2] / dirs[:, 2]
    x, y = (origins[:, :2] + t[:, None] * dirs[:, :2]).unbind(-1)
    return torch.stack([torch.sin(2.0 * x + 1.0), torch.cos(2.5 * y), torch.sin(1.5 * x + 2.0 * y)], -1)


def test_refinement_recovers_a_known_pose_perturbation():
    torch.set_num_threads(1)  # tiny tensors: thread hand-offs would dominate on a loaded machine
    true = _cameras()
    ids, px, py = _all_rays(true)
    target = _plane_colour(*true.generate_rays(ids, px, py))
    # given poses c2w_true @ exp(-xi): the correction that undoes them is delta = xi
    xi = torch.cat([0.08 * torch.randn(4, 3, generator=torch.Generator().manual_seed(3)),
                    0.04 * torch.randn(4, 3, generator=torch.Generator().manual_seed(4))], -1)
    perturb = CameraOptimizer(true.c2w)
    with torch.no_grad():
        perturb.deltas.copy_(-xi)
    given = Cameras.from_fov(perturb.refined_c2w().detach(), 1.4, true.width, true.height)
    rays = given.generate_rays(ids, px, py)
    opt = CameraOptimizer(given.c2w)
    adam = torch.optim.Adam(opt.parameters(), lr=1.5e-2)

    def loss() -> torch.Tensor:
        return (_plane_colour(*opt.apply(ids, *rays)) - target).square().mean()

    start = float(loss().detach())
    for _ in range(80):
        adam.zero_grad()
        loss().backward()
        adam.step()
    assert float(loss().detach()) < 0.01 * start
    cosine = torch.nn.functional.cosine_similarity(opt.deltas.detach(), xi, dim=-1)
    assert bool((cosine > 0.95).all()), cosine
    torch.testing.assert_close(opt.deltas.detach(), xi, atol=0.03, rtol=0.0)


def test_rejects_a_badly_shaped_pose_tensor():
    with pytest.raises(ValueError, match="c2w"):
        CameraOptimizer(torch.eye(4))
