"""Splat rasterizer: torch twin vs a brute-force per-pixel reference, native kernel vs twin, projection maths."""

from __future__ import annotations

import math

import pytest
import torch

from omnifield.backend import has_module
from omnifield.fields.gaussians import GaussianScene, build_covariances
from omnifield.renderers.splat import (
    SplatRenderer,
    intersect_tiles,
    project_gaussians,
    project_splats,
    rasterize_to_pixels,
)
from omnifield.renderers.splat.rasterize import _rasterize_to_pixels
from tests._native import native_or_skip


def random_screen_gaussians(n: int, width: int, height: int, dtype=torch.float64, seed: int = 0):
    """Random 2-D Gaussians spilling over the image border, with consistent conics and radii."""
    g = torch.Generator().manual_seed(seed)
    means2d = torch.rand(n, 2, generator=g, dtype=dtype) * torch.tensor([width + 8.0, height + 8.0], dtype=dtype) - 4
    half = torch.randn(n, 2, 2, generator=g, dtype=dtype) * 2.5
    cov = half @ half.transpose(1, 2) + 0.8 * torch.eye(2, dtype=dtype)
    inv = torch.linalg.inv(cov)
    conics = torch.stack([inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]], dim=-1)
    radii = torch.ceil(3 * torch.linalg.eigvalsh(cov)[:, 1].sqrt()).int()
    radii[0] = 0  # one culled Gaussian
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.98 + 0.01
    opacities[1] = 0.9995  # exercises the alpha clamp
    depths = torch.rand(n, generator=g, dtype=dtype)
    return means2d, conics, colors, opacities, depths, radii


def brute_force_render(means2d, conics, colors, opacities, depths, radii, width, height, tile_size, background):
    """Per-pixel reference: every Gaussian whose tile rectangle holds the pixel's tile, blended front to back."""
    order = sorted(range(len(depths)), key=lambda i: (float(depths[i]), i))
    rows, alphas = [], []
    for y in range(height):
        row, arow = [], []
        for x in range(width):
            px, py = x + 0.5, y + 0.5
            tx, ty = x // tile_size, y // tile_size
            color, trans = torch.zeros_like(background), torch.ones((), dtype=background.dtype)
            for i in order:
                r = int(radii[i])
                if r <= 0:
                    continue
                mx, my = means2d[i].tolist()
                if not (math.floor((mx - r) / tile_size) <= tx < math.ceil((mx + r) / tile_size)):
                    continue
                if not (math.floor((my - r) / tile_size) <= ty < math.ceil((my + r) / tile_size)):
                    continue
                dx, dy = means2d[i, 0] - px, means2d[i, 1] - py
                a, b, c = conics[i]
                sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                if sigma < 0:
                    continue
                alpha = torch.clamp(opacities[i] * torch.exp(-sigma), max=0.999)
                if alpha < 1 / 255:
                    continue
                if trans * (1 - alpha) <= 1e-4:
                    break
                color = color + alpha * trans * colors[i]
                trans = trans * (1 - alpha)
            row.append(color + trans * background)
            arow.append(1 - trans)
        rows.append(torch.stack(row))
        alphas.append(torch.stack(arow))
    return torch.stack(rows), torch.stack(alphas)


def _grads(fn, inputs, v_img, v_alpha):
    img, alpha = fn(*inputs)
    loss = (img * v_img).sum() + (alpha * v_alpha).sum()
    diff = [inputs[i] for i in (0, 1, 2, 3)] + [inputs[-1]]
    return img, alpha, torch.autograd.grad(loss, diff)


@pytest.mark.parametrize("width,height,tile_size", [(13, 11, 4), (20, 9, 8)])
def test_twin_matches_brute_force_image_and_gradients(width, height, tile_size):
    means2d, conics, colors, opac, depths, radii = random_screen_gaussians(12, width, height)
    background = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (means2d, conics, colors, opac)]
    bg = background.clone().requires_grad_()
    inputs = (*leaves, depths, radii, width, height, tile_size, bg)
    g = torch.Generator().manual_seed(1)
    v_img = torch.randn(height, width, 3, generator=g, dtype=torch.float64)
    v_alpha = torch.randn(height, width, generator=g, dtype=torch.float64)
    ref = _grads(brute_force_render, inputs, v_img, v_alpha)
    twin = _grads(_rasterize_to_pixels, inputs, v_img, v_alpha)
    assert ref[1].max() > 0.5, "scene should be substantially covered"
    torch.testing.assert_close(twin[0], ref[0], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(twin[1], ref[1], rtol=1e-9, atol=1e-10)
    for got, want in zip(twin[2], ref[2]):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9)


def test_early_termination_stops_blending():
    """Behind an opaque stack (T <= 1e-4), a red Gaussian must not show; in front of it, it must."""
    n = 4
    means2d = torch.full((n, 2), 8.0, dtype=torch.float64)
    conics = torch.tensor([[0.01, 0.0, 0.01]] * n, dtype=torch.float64)
    colors = torch.tensor([[0.0, 0.0, 1.0]] * 3 + [[1.0, 0.0, 0.0]], dtype=torch.float64)
    opac = torch.tensor([0.999, 0.999, 0.999, 0.999], dtype=torch.float64)
    radii = torch.full((n,), 30, dtype=torch.int32)
    bg = torch.zeros(3, dtype=torch.float64)
    behind = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    img, _ = _rasterize_to_pixels(means2d, conics, colors, opac, behind, radii, 16, 16, 16, bg)
    assert float(img[8, 8, 0]) == 0.0
    front = torch.tensor([1.0, 2.0, 3.0, 0.0], dtype=torch.float64)
    img, _ = _rasterize_to_pixels(means2d, conics, colors, opac, front, radii, 16, 16, 16, bg)
    assert float(img[8, 8, 0]) > 0.99


@pytest.mark.parametrize("width,height,n", [(37, 29, 150), (64, 48, 600)])
def test_native_kernel_matches_twin(width, height, n):
    native_or_skip("splat_raster")
    means2d, conics, colors, opac, depths, radii = random_screen_gaussians(n, width, height, torch.float32, seed=n)
    bg = torch.tensor([0.2, 0.3, 0.4]).requires_grad_()
    leaves = [t.clone().requires_grad_() for t in (means2d, conics, colors, opac)]
    inputs = (*leaves, depths, radii, width, height, 16, bg)
    v_img, v_alpha = torch.randn(height, width, 3), torch.randn(height, width)
    native = _grads(rasterize_to_pixels, inputs, v_img, v_alpha)
    twin = _grads(_rasterize_to_pixels, inputs, v_img, v_alpha)
    torch.testing.assert_close(native[0], twin[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(native[1], twin[1], rtol=1e-4, atol=1e-5)
    for got, want in zip(native[2], twin[2]):
        scale = float(want.abs().max())
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize("backend", ["twin", "native"])
def test_a_thin_gaussian_is_binned_only_to_the_tiles_its_ellipse_reaches(backend):
    """A horizontal needle (sigma 20 px across, 0.5 px down) has gsplat's square radius of 67 px (9 x 9 tiles
    of 16 px, 9 tile rows); only the one tile row that holds its ellipse of alpha cut-off may list it."""
    cov = torch.diag(torch.tensor([400.0, 0.25]))
    inv = torch.linalg.inv(cov)
    means2d, conics = torch.tensor([[80.0, 88.0]]), torch.stack([inv[0, 0], inv[0, 1], inv[1, 1]])[None]
    opac, radii, depths = torch.tensor([0.9]), torch.tensor([67], dtype=torch.int32), torch.zeros(1)
    if backend == "native":
        lib = native_or_skip("splat_raster")
        offsets = lib.forward(means2d, conics, torch.ones(1, 3), opac, depths, radii, torch.zeros(3), 160, 160, 16)[3]
    else:
        offsets, _ = intersect_tiles(means2d, conics, opac, radii, depths, 160, 160, 16)
    listed = (offsets[1:] - offsets[:-1]).reshape(10, 10)
    assert listed[5].tolist() == [1] * 10 and int(listed.sum()) == 10, listed  # 80 +- 66 px across


def test_native_kernel_is_used_for_cpu_float32():
    assert native_or_skip("splat_raster") is not None


def test_projection_of_centred_isotropic_gaussian():
    """A Gaussian of scale s at depth z on the optical axis lands at (cx, cy) with variance (f s / z)^2 + 0.3."""
    s, z, f = 0.2, 4.0, 50.0
    means = torch.tensor([[0.0, 0.0, z]], dtype=torch.float64)
    covars = build_covariances(torch.full((1, 3), s, dtype=torch.float64), torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64))
    K = torch.tensor([[f, 0, 32.0], [0, f, 24.0], [0, 0, 1]], dtype=torch.float64)
    means2d, conics, depths, radii = project_gaussians(means, covars, torch.eye(4, dtype=torch.float64), K, 64, 48)
    var = (f * s / z) ** 2 + 0.3
    torch.testing.assert_close(means2d, torch.tensor([[32.0, 24.0]], dtype=torch.float64))
    torch.testing.assert_close(conics, torch.tensor([[1 / var, 0.0, 1 / var]], dtype=torch.float64))
    assert float(depths[0]) == z and int(radii[0]) == math.ceil(3 * math.sqrt(var))
    behind = project_gaussians(-means, covars, torch.eye(4, dtype=torch.float64), K, 64, 48)[3]
    assert int(behind[0]) == 0


def test_projection_radius_reaches_the_alpha_cut_off_of_each_opacity():
    """gsplat's rule: radius = min(3.33, sqrt(2 ln(255 o))) sigma; below alpha 1/255 nothing is drawn."""
    s, z, f = 0.2, 4.0, 50.0
    means = torch.tensor([[0.0, 0.0, z]] * 3, dtype=torch.float64)
    covars = build_covariances(torch.full((3, 3), s, dtype=torch.float64), torch.tensor([[1.0, 0, 0, 0]] * 3, dtype=torch.float64))
    K = torch.tensor([[f, 0, 32.0], [0, f, 24.0], [0, 0, 1]], dtype=torch.float64)
    opac = torch.tensor([0.99, 0.02, 0.003], dtype=torch.float64)
    radii = project_gaussians(means, covars, torch.eye(4, dtype=torch.float64), K, 64, 48, opacities=opac)[3]
    sigma = math.sqrt((f * s / z) ** 2 + 0.3)
    assert int(radii[0]) == math.ceil(3.33 * sigma)
    assert int(radii[1]) == math.ceil(math.sqrt(2 * math.log(255 * 0.02)) * sigma) < int(radii[0])
    assert int(radii[2]) == 0  # 0.003 < 1/255: never reaches the alpha threshold


def test_projection_jacobian_against_finite_differences():
    """Off-axis Gaussian: the 2-D covariance equals the finite-difference Jacobian pushed through Sigma."""
    torch.manual_seed(0)
    mean = torch.tensor([0.3, -0.2, 3.0], dtype=torch.float64)
    covar = build_covariances(torch.tensor([[0.1, 0.3, 0.05]], dtype=torch.float64), torch.randn(1, 4, dtype=torch.float64))
    K = torch.tensor([[40.0, 0, 20.0], [0, 45.0, 15.0], [0, 0, 1]], dtype=torch.float64)
    project = lambda p: torch.stack([K[0, 0] * p[0] / p[2] + K[0, 2], K[1, 1] * p[1] / p[2] + K[1, 2]])  # noqa: E731
    jac = torch.autograd.functional.jacobian(project, mean)
    cov2d = jac @ covar[0] @ jac.T + 0.3 * torch.eye(2, dtype=torch.float64)
    inv = torch.linalg.inv(cov2d)
    _, conics, _, _ = project_gaussians(mean[None], covar, torch.eye(4, dtype=torch.float64), K, 40, 30)
    torch.testing.assert_close(conics[0], torch.stack([inv[0, 0], inv[0, 1], inv[1, 1]]))


def _projection_inputs(n: int):
    """Gaussians around a camera looking down +z: some behind the near plane, some far outside the view
    (the Jacobian clamp), scales over two orders of magnitude, unnormalised quaternions."""
    g = torch.Generator().manual_seed(7)
    means = torch.randn(n, 3, generator=g) * torch.tensor([2.0, 2.0, 1.5]) + torch.tensor([0.0, 0.0, 2.5])
    means[:4, 2] = torch.tensor([-1.0, 0.0, 0.005, 0.02])  # behind, at and just past the near plane
    means[4:8, :2] = torch.tensor([[30.0, 0.0], [-30.0, 1.0], [0.5, 40.0], [2.0, -35.0]])  # clamped J
    scales = torch.exp(torch.rand(n, 3, generator=g) * 4.0 - 5.0)
    quats = torch.randn(n, 4, generator=g) * 3.0
    opacities = torch.rand(n, generator=g)
    viewmat = torch.eye(4)
    angle = 0.3
    viewmat[:3, :3] = torch.tensor([[math.cos(angle), 0.0, math.sin(angle)], [0.0, 1.0, 0.0],
                                    [-math.sin(angle), 0.0, math.cos(angle)]])
    viewmat[:3, 3] = torch.tensor([0.1, -0.2, 0.3])
    K = torch.tensor([[55.0, 0.0, 31.0], [0.0, 60.0, 22.0], [0.0, 0.0, 1.0]])
    return means, scales, quats, opacities, viewmat, K


@pytest.mark.parametrize("with_opacity", [True, False])
def test_native_projection_matches_the_torch_composition(with_opacity):
    """The fused kernel (scales, quaternions -> screen ellipses, and back) against
    ``project_gaussians(build_covariances(...))`` in float64: values, radii and all three gradients."""
    native_or_skip("splat_project")
    means, scales, quats, opacities, viewmat, K = _projection_inputs(300)
    opac = opacities if with_opacity else None
    g = torch.Generator().manual_seed(8)
    v_m2, v_con, v_dep = torch.randn(300, 2, generator=g), torch.randn(300, 3, generator=g), torch.randn(300, generator=g)

    def run(dtype, project):
        leaves = [t.to(dtype).requires_grad_() for t in (means, scales, quats)]
        o = opac.to(dtype) if opac is not None else None
        m2, con, dep, radii = project(*leaves, viewmat.to(dtype), K.to(dtype), 64, 48, opacities=o)
        visible = (radii > 0).to(dtype)  # as the rasterizer: undrawn Gaussians get no screen-space gradient
        loss = ((m2 * v_m2.to(dtype)).sum(-1) * visible).sum() + ((con * v_con.to(dtype)).sum(-1) * visible).sum()
        loss = loss + (dep * v_dep.to(dtype)).sum()
        return (m2, con, dep, radii), torch.autograd.grad(loss, leaves)

    def twin(m, s, q, viewmat, K, w, h, opacities):
        return project_gaussians(m, build_covariances(s, q), viewmat, K, w, h, opacities=opacities)

    (m2, con, dep, radii), grads = run(torch.float32, project_splats)
    (m2_ref, con_ref, dep_ref, radii_ref), grads_ref = run(torch.float64, twin)
    assert 20 < int((radii > 0).sum()) < 280, "the scene should be partly visible"
    assert torch.equal(radii, radii_ref)
    visible = radii > 0
    torch.testing.assert_close(m2[visible].double(), m2_ref[visible], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(con[visible].double(), con_ref[visible], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(dep.double(), dep_ref, rtol=1e-6, atol=1e-6)
    for got, want in zip(grads, grads_ref):
        scale = want.abs().amax(dim=-1, keepdim=True)
        assert float(((got.double() - want).abs() / (scale + 1e-6)).max()) < 1e-3


def test_native_projection_is_used_for_cpu_float32_and_not_for_pose_gradients(monkeypatch):
    native_or_skip("splat_project")
    from omnifield.renderers.splat import projection

    means, scales, quats, opacities, viewmat, K = _projection_inputs(50)
    called = []
    original = projection.project_gaussians
    monkeypatch.setattr(projection, "project_gaussians", lambda *a, **k: called.append(1) or original(*a, **k))
    project_splats(means, scales, quats, viewmat, K, 64, 48, opacities=opacities)
    assert not called
    pose = viewmat.clone().requires_grad_()
    means2d = project_splats(means, scales, quats, pose, K, 64, 48, opacities=opacities)[0]
    assert called
    assert torch.autograd.grad(means2d.sum(), pose)[0].abs().sum() > 0


def _tiny_scene(dtype=torch.float64, n: int = 20) -> GaussianScene:
    g = torch.Generator().manual_seed(3)
    scene = GaussianScene(
        torch.rand(n, 3, generator=g) - 0.5,
        torch.log(torch.rand(n, 3, generator=g) * 0.15 + 0.05),
        torch.randn(n, 4, generator=g),
        torch.randn(n, generator=g),
        torch.randn(n, 4, 3, generator=g) * 0.3,
    )
    return scene.to(dtype)


def test_renderer_gradients_through_projection_gradcheck():
    """End-to-end float64 gradcheck of image w.r.t. 3-D means, scales, rotations (torch path)."""
    scene = _tiny_scene(n=8)
    renderer = SplatRenderer(background=(0.0, 0.0, 0.0), tile_size=4)
    eye = torch.eye(4, dtype=torch.float64)
    eye[2, 3] = 2.5
    K = torch.tensor([[12.0, 0, 6.0], [0, 12.0, 5.0], [0, 0, 1]], dtype=torch.float64)

    class Rendered(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scene = scene

        def forward(self):
            return renderer.render(self.scene, eye, K, 12, 10)["rgb"]

    module = Rendered()

    def f(means, log_scales, quats):
        params = {"scene.means": means, "scene.log_scales": log_scales, "scene.quats": quats}
        return torch.func.functional_call(module, params, ())

    inputs = tuple(getattr(scene, k).detach().clone().requires_grad_() for k in ("means", "log_scales", "quats"))
    assert f(*inputs).std() > 0.05, "the view should see the Gaussians"
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.skipif(not torch.cuda.is_available() or not has_module("gsplat"), reason="needs CUDA and gsplat")
def test_cpu_rasterizer_matches_gsplat_on_cuda():
    scene = _tiny_scene(torch.float32)
    renderer = SplatRenderer(background=(0.2, 0.3, 0.4))
    eye = torch.eye(4)
    eye[2, 3] = 2.5
    K = torch.tensor([[60.0, 0, 32.0], [0, 60.0, 24.0], [0, 0, 1]])
    cpu = renderer.render(scene, eye, K, 64, 48)
    (cpu["rgb"].sum() + cpu["alpha"].sum()).backward()
    cpu_grads = [p.grad.clone() for p in scene.parameters()]
    scene_cuda = _tiny_scene(torch.float32).cuda()
    gpu = renderer.render(scene_cuda, eye.cuda(), K.cuda(), 64, 48)
    (gpu["rgb"].sum() + gpu["alpha"].sum()).backward()
    torch.testing.assert_close(gpu["rgb"].cpu(), cpu["rgb"].detach(), rtol=1e-3, atol=2e-3)
    torch.testing.assert_close(gpu["alpha"].cpu(), cpu["alpha"].detach(), rtol=1e-3, atol=2e-3)
    for got, want in zip((p.grad.cpu() for p in scene_cuda.parameters()), cpu_grads):
        torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2 * float(want.abs().max()) + 1e-5)
