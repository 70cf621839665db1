"""EWA projection of 3-D Gaussians to screen-space ellipses (Zwicker et al. 2001, as in 3DGS/gsplat).

For a Gaussian with mean ``mu`` and covariance ``Sigma = R S S^T R^T`` (see
``omnifield.fields.gaussians.build_covariances``), a world-to-camera ``viewmat``
(OpenCV: x right, y down, z forward) and pinhole intrinsics ``K``::

    t        = W mu + w                              camera-space mean, depth = t_z
    mean2d   = (fx t_x / t_z + cx,  fy t_y / t_z + cy)
    J        = [[fx/t_z, 0, -fx t_x/t_z^2], [0, fy/t_z, -fy t_y/t_z^2]]   (t_x/t_z clamped to 1.3x the FOV)
    Sigma2d  = J W Sigma W^T J^T + eps2d I             eps2d = 0.3 px^2 (low-pass filter)
    conic    = Sigma2d^-1 as (a, b, c) of [[a, b], [b, c]]
    radius   = ceil(3 sqrt(lambda_max(Sigma2d)))

Pixel ``(i, j)`` has its centre at ``(i + 0.5, j + 0.5)``. Gaussians behind the
near plane, degenerate, or entirely off-screen get ``radius = 0`` and are not drawn.
:func:`project_gaussians` is plain differentiable torch on covariances. :func:`project_splats` is
the op the renderer uses, on scales and quaternions: for CPU float32 a native kernel
(``omnifield/native/splat_project.cpp``) does the covariance, the projection and their backward in
one pass per Gaussian, with ``project_gaussians(build_covariances(...))`` as its twin.
"""

from __future__ import annotations

import torch

from omnifield.backend import native_kernels
from omnifield.fields.gaussians import alpha_cutoff, build_covariances


def viewmat_from_c2w_opengl(c2w: torch.Tensor) -> torch.Tensor:
    """OpenCV world-to-camera matrix from an OpenGL camera-to-world matrix (x right, y up, looking down -z).

    ``c2w [..., 4, 4] -> [..., 4, 4]``.
    """
    opencv = torch.cat([c2w[..., :1], -c2w[..., 1:3], c2w[..., 3:]], dim=-1)  # flip the y and z axes
    return torch.linalg.inv_ex(opencv).inverse  # no host sync on CUDA (inv checks for singularity)


def project_gaussians(
    means: torch.Tensor,  # [N, 3]
    covars: torch.Tensor,  # [N, 3, 3]
    viewmat: torch.Tensor,  # [4, 4] world-to-camera, OpenCV convention
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
    opacities: torch.Tensor | None = None,  # [N]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project Gaussians into one camera.

    Returns ``means2d [N, 2]`` (pixels), ``conics [N, 3]`` (a, b, c of the inverse 2-D covariance),
    ``depths [N]`` (camera z) and ``radii [N]`` (int32 pixels, 0 = not drawn). With ``opacities`` the
    radius reaches where alpha falls to 1/255, ``min(3.33, sqrt(2 ln(255 o)))`` sigma, as gsplat
    does (faint Gaussians cover fewer tiles); without, 3 sigma.
    """
    rot, trans = viewmat[:3, :3], viewmat[:3, 3]
    t = means @ rot.T + trans
    depths = t[:, 2]
    tz = depths.clamp_min(near)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    tx = tz * torch.minimum(torch.maximum(t[:, 0] / tz, -lim_x_neg), lim_x_pos)
    ty = tz * torch.minimum(torch.maximum(t[:, 1] / tz, -lim_y_neg), lim_y_pos)
    zeros = torch.zeros_like(tz)
    jac = torch.stack(
        [fx / tz, zeros, -fx * tx / tz**2, zeros, fy / tz, -fy * ty / tz**2], dim=-1
    ).reshape(-1, 2, 3)
    jw = jac @ rot
    cov2d = jw @ covars @ jw.transpose(-1, -2)
    a = cov2d[:, 0, 0] + eps2d
    b = cov2d[:, 0, 1]
    c = cov2d[:, 1, 1] + eps2d
    det = a * c - b * b
    det_safe = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * t[:, 0] / tz + cx, fy * t[:, 1] / tz + cy], dim=-1)
    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt((mid * mid - det).clamp_min(0.01))
        extent = 3.0
        if opacities is not None:
            extent = alpha_cutoff(opacities.detach()).sqrt().clamp(max=3.33)
        radii = torch.ceil(extent * torch.sqrt(lam))
        visible = (
            (depths > near)
            & (depths < far)
            & (det > 0)
            & (radii > 0)
            & (means2d[:, 0] + radii > 0)
            & (means2d[:, 0] - radii < width)
            & (means2d[:, 1] + radii > 0)
            & (means2d[:, 1] - radii < height)
        )
        radii = torch.where(visible, radii, torch.zeros_like(radii)).to(torch.int32)
    return means2d, conics, depths, radii


def project_splats(
    means: torch.Tensor,  # [N, 3]
    scales: torch.Tensor,  # [N, 3] linear
    quats: torch.Tensor,  # [N, 4] (w, x, y, z), normalised here
    viewmat: torch.Tensor,  # [4, 4]
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
    opacities: torch.Tensor | None = None,  # [N]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`project_gaussians` of ``build_covariances(scales, quats)``, same returns.

    Differentiable in ``means``, ``scales`` and ``quats`` (and in the camera through the torch twin, which
    runs whenever ``viewmat`` or ``K`` needs a gradient, or off the CPU / float32 path).
    """
    lib = native_kernels(means, "splat_project")
    if lib is None or viewmat.requires_grad or K.requires_grad:
        covars = build_covariances(scales, quats)
        return project_gaussians(means, covars, viewmat, K, width, height, near, far, eps2d, opacities)
    return _NativeProject.apply(means, scales, quats, opacities, viewmat, K, width, height, near, far, eps2d, lib)


class _NativeProject(torch.autograd.Function):
    """Autograd wrapper of the native projection kernels (radii carry no gradient)."""

    @staticmethod
    def forward(ctx, means, scales, quats, opacities, viewmat, K, width, height, near, far, eps2d, lib):
        inputs = [t.detach().contiguous().float() for t in (means, scales, quats)]
        camera = [t.detach().contiguous().float() for t in (viewmat, K)]
        opac = opacities.detach().contiguous().float() if opacities is not None else inputs[0].new_empty(0)
        means2d, conics, depths, radii = lib.forward(*inputs, opac, *camera, width, height, near, far, eps2d,
                                                     opacities is not None)
        ctx.save_for_backward(*inputs, *camera)
        ctx.lib, ctx.size, ctx.near, ctx.eps2d = lib, (width, height), near, eps2d
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii):
        means, scales, quats, viewmat, K = ctx.saved_tensors
        shapes = [(len(means), 2), (len(means), 3), (len(means),)]
        grads = [means.new_zeros(shape) if g is None else g.contiguous().float()
                 for g, shape in zip((v_means2d, v_conics, v_depths), shapes)]
        v_means, v_scales, v_quats = ctx.lib.backward(means, scales, quats, viewmat, K, *ctx.size, ctx.near,
                                                      ctx.eps2d, *grads)
        return v_means, v_scales, v_quats, None, None, None, None, None, None, None, None, None
