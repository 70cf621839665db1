"""Camera-pose refinement: a learned SE(3) correction per training image (BARF, nerfacto).

Each image ``i`` carries a tangent vector ``delta_i = (v, w)`` (translation part ``v``, rotation
vector ``w``), initialised to zero, and its refined pose is ``c2w_i' = c2w_i @ exp(delta_i)``: the
correction lives in the camera frame, as nerfstudio's ``SE3`` camera optimiser. Rays of a batch are
moved by that correction without re-generating them (any lens model works)::

    p' = c2w_i exp(delta_i) c2w_i^-1 p     (points: origins;  vectors: directions without translation)

written as ``p + D_i (p - t_i) + R_i v'`` with ``D_i = R_i (exp_R(w_i) - I) R_i^T`` so zero deltas
leave the rays bit-identical.
"""

from __future__ import annotations

import torch
from torch import nn

# below this squared angle the Rodrigues coefficients use their Taylor series (exact to float64 rounding)
_SMALL_ANGLE2 = 1e-4


def _hat(w: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric matrices ``[..., 3, 3]`` of vectors ``w [..., 3]`` (``hat(w) x = w x x``)."""
    x, y, z = w.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*w.shape[:-1], 3, 3)


def se3_exp(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exponential map of se(3): ``delta [..., 6] = (v, w)`` -> ``(R - I [..., 3, 3], t [..., 3])``.

    ``R = I + A K + B K^2`` (Rodrigues, ``K = hat(w)``, ``A = sin(a)/a``, ``B = (1 - cos a)/a^2``,
    ``a = |w|``) and ``t = V v`` with ``V = I + B K + C K^2``, ``C = (a - sin a)/a^3``. ``R - I`` is
    returned rather than ``R`` so that a zero ``w`` gives exact zeros; add ``torch.eye(3)`` for ``R``.
    Small angles use the Taylor series of ``A, B, C``, so values and gradients stay finite at zero.
    """
    v, w = delta[..., :3], delta[..., 3:]
    a2 = (w * w).sum(-1)[..., None, None]
    small = a2 < _SMALL_ANGLE2
    a2_safe = torch.where(small, torch.ones_like(a2), a2)
    a = a2_safe.sqrt()
    sin, cos = torch.sin(a), torch.cos(a)
    coef_a = torch.where(small, 1 - a2 / 6 + a2 * a2 / 120, sin / a)
    coef_b = torch.where(small, 0.5 - a2 / 24 + a2 * a2 / 720, (1 - cos) / a2_safe)
    coef_c = torch.where(small, 1 / 6 - a2 / 120 + a2 * a2 / 5040, (a - sin) / (a2_safe * a))
    k = _hat(w)
    k2 = k @ k
    rot_minus_eye = coef_a * k + coef_b * k2
    t = v + ((coef_b * k + coef_c * k2) @ v[..., None]).squeeze(-1)
    return rot_minus_eye, t


class CameraOptimizer(nn.Module):
    """Per-image SE(3) pose corrections of ``n`` training cameras with poses ``c2w [n, 4, 4]``.

    - ``deltas [n, 6]``: the learned tangent vectors ``(v, w)``, zero at the start;
    - ``apply(camera_ids [R], origins [R, 3], directions [R, 3]) -> (origins, directions)``: the rays
      of a batch as seen from the refined poses ``c2w @ exp(delta)``;
    - ``refined_c2w() -> [n, 4, 4]``; ``penalty() -> []`` (mean squared norm of the deltas).

    The given poses are a buffer, so a checkpoint re-opens with both the poses and their corrections.
    """

    def __init__(self, c2w: torch.Tensor):
        super().__init__()
        if c2w.dim() != 3 or c2w.shape[1:] != (4, 4):
            raise ValueError(f"c2w must be [n, 4, 4], got {tuple(c2w.shape)}")
        self.register_buffer("c2w", c2w.detach().float().clone())
        self.deltas = nn.Parameter(torch.zeros(c2w.shape[0], 6, dtype=torch.float32, device=c2w.device))

    def _world_corrections(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per camera ``D = R (exp_R(w) - I) R^T [n, 3, 3]`` and the translation ``R t(delta) [n, 3]``."""
        rot_minus_eye, t = se3_exp(self.deltas)
        rot = self.c2w[:, :3, :3]
        return rot @ rot_minus_eye @ rot.transpose(1, 2), (rot @ t[..., None]).squeeze(-1)

    def apply(self, camera_ids: torch.Tensor, origins: torch.Tensor,
              directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rays ``origins, directions [R, 3]`` of cameras ``camera_ids [R]`` moved to the refined poses."""
        d, shift = self._world_corrections()
        d, shift, centre = d[camera_ids], shift[camera_ids], self.c2w[camera_ids, :3, 3]
        origins = origins + (d @ (origins - centre)[..., None]).squeeze(-1) + shift
        directions = directions + (d @ directions[..., None]).squeeze(-1)
        return origins, directions

    def refined_c2w(self) -> torch.Tensor:
        """Refined camera-to-world matrices ``c2w @ exp(delta)``, ``[n, 4, 4]``."""
        rot_minus_eye, t = se3_exp(self.deltas)
        exp = torch.eye(4, dtype=self.c2w.dtype, device=self.c2w.device).repeat(self.c2w.shape[0], 1, 1)
        exp[:, :3, :3] += rot_minus_eye
        exp[:, :3, 3] = t
        return self.c2w @ exp

    def penalty(self) -> torch.Tensor:
        """L2 regulariser: mean over images of ``|delta_i|^2`` (a scalar)."""
        return self.deltas.square().sum(-1).mean()
