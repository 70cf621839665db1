"""Vision-only pose estimation: align a camera image with the field's rendering (iNeRF-style, as in
Adamkiewicz et al. 2022).

A pose is a function of a small perturbation ``delta`` (a camera twist for a bare estimate, the filter's
error state inside :class:`~omnifield.apps.nav.filter.StateFilter`). Adam minimises::

    loss(delta) = sum_r |render(ray_r(pose(delta))) - image(pixel_r)|^2 / (2 sigma_px^2)
                  + 1/2 delta^T P^{-1} delta                    (Mahalanobis prior, optional)

over a subset of rays redrawn each step, with pixels drawn in proportion to the image gradient (mixed
with uniform draws) so rays land on texture and edges. Rendering goes through the shared
:class:`~omnifield.renderers.volume.VolumeRenderer`. At the optimum the Gauss-Newton information
``J^T J / sigma_px^2`` of the photometric term (Jacobian by central differences) is returned for the filter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from omnifield.apps.nav.lie import se3_exp
from omnifield.fields.protocol import RadianceFieldLike
from omnifield.renderers.cameras import Cameras
from omnifield.renderers.volume import VolumeRenderer


@dataclass
class EstimatorConfig:
    """Photometric alignment settings."""

    n_rays: int = 256  # rays per optimisation step
    steps: int = 150
    lr: float = 0.01
    uniform_fraction: float = 0.3  # share of rays drawn uniformly, the rest by image gradient
    pixel_sigma: float = 0.05  # photometric noise (colour units) weighting the photometric term
    jacobian_eps: float = 1e-3
    information_rays: int = 512  # rays used for the information matrix at the optimum


@dataclass
class PinholeCamera:
    """Intrinsics of the robot's camera (pixels). Camera axes follow the renderer (OpenGL: looks down -z)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, width: int, height: int, fov_x_deg: float) -> "PinholeCamera":
        f = 0.5 * width / torch.tan(torch.deg2rad(torch.tensor(fov_x_deg / 2))).item()
        return cls(width, height, f, f, width / 2, height / 2)

    def cameras(self, c2w: torch.Tensor) -> Cameras:
        """Renderer cameras for poses ``c2w [N, 4, 4]`` (gradients flow through ``c2w``)."""
        full = lambda v: torch.full((c2w.shape[0],), float(v))  # noqa: E731
        return Cameras(c2w, full(self.fx), full(self.fy), full(self.cx), full(self.cy), self.width, self.height)


@dataclass
class AlignResult:
    """Optimal perturbation ``delta [D]``, photometric information ``[D, D]``, loss per step, seconds."""

    delta: torch.Tensor
    information: torch.Tensor
    history: list = field(default_factory=list)
    seconds: float = 0.0


def image_gradient_weights(image: torch.Tensor) -> torch.Tensor:
    """Sampling weights ``[H*W]`` proportional to the colour-gradient magnitude of ``image [H, W, 3]``
    (uniform for a flat image)."""
    gy, gx = torch.gradient(image, dim=(0, 1))
    mag = (gx.square() + gy.square()).sum(-1).sqrt().reshape(-1) + 1e-6
    return mag / mag.sum()


class PhotometricEstimator:
    """Recovers camera poses from images by photometric alignment against ``field``'s rendering."""

    def __init__(self, field: RadianceFieldLike, renderer: VolumeRenderer, camera: PinholeCamera, cfg: EstimatorConfig | None = None,
                 background: torch.Tensor | None = None):
        self.field, self.renderer, self.camera = field, renderer, camera
        self.cfg = cfg or EstimatorConfig()
        self.background = background

    def draw_pixels(self, weights: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel-centre coordinates ``px, py [n]``: gradient-weighted draws mixed with uniform ones."""
        n_uniform = int(round(n * self.cfg.uniform_fraction))
        hw = weights.numel()
        idx = torch.cat([
            torch.multinomial(weights, n - n_uniform, replacement=True, generator=generator),
            torch.randint(0, hw, (n_uniform,), generator=generator),
        ])
        return (idx % self.camera.width).float() + 0.5, torch.div(idx, self.camera.width, rounding_mode="floor").float() + 0.5

    def render_pixels(self, c2w: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
        """Rendered colours ``[P, 3]`` of the field at pixels ``px, py [P]`` seen from each pose ``c2w [N, 4, 4]``
        (``[N * P, 3]``, pose-major)."""
        n, p = c2w.shape[0], px.shape[0]
        cams = self.camera.cameras(c2w)
        idx = torch.arange(n).repeat_interleave(p)
        origins, dirs = cams.generate_rays(idx, px.repeat(n), py.repeat(n))
        return self.renderer.render_rays(self.field, origins, dirs, self.background).rgb

    def align(
        self,
        image: torch.Tensor,  # [H, W, 3] in [0, 1]
        pose_of: Callable[[torch.Tensor], torch.Tensor],  # delta [D] -> c2w [4, 4]
        dim: int,
        prior_information: torch.Tensor | None = None,  # [D, D]
        seed: int = 0,
    ) -> AlignResult:
        """Minimise the photometric (+ prior) loss over ``delta [D]`` starting from zero."""
        tic = time.perf_counter()
        cfg = self.cfg
        image = image.float()
        target = image.reshape(-1, 3)
        weights = image_gradient_weights(image)
        gen = torch.Generator().manual_seed(seed)
        delta = torch.zeros(dim, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=cfg.lr)
        history = []
        for _ in range(cfg.steps):
            px, py = self.draw_pixels(weights, cfg.n_rays, gen)
            pix = (py.long() * self.camera.width + px.long())
            opt.zero_grad(set_to_none=True)
            rgb = self.render_pixels(pose_of(delta)[None], px, py)
            loss = (rgb - target[pix]).square().sum(-1).mean() / (2 * cfg.pixel_sigma**2)
            if prior_information is not None:
                loss = loss + 0.5 * delta @ prior_information @ delta / cfg.n_rays
            loss.backward()
            opt.step()
            history.append(loss.item())
        delta = delta.detach()
        info = self.photometric_information(image, pose_of, delta, weights, gen)
        return AlignResult(delta, info, history, time.perf_counter() - tic)

    @torch.no_grad()
    def photometric_information(self, image, pose_of, delta, weights, generator) -> torch.Tensor:
        """Gauss-Newton information ``J^T J / sigma^2`` ``[D, D]`` of the photometric term at ``delta``;
        ``J`` (residuals by ``delta``) by central differences, all perturbed poses rendered in one batch."""
        dim, eps = delta.shape[0], self.cfg.jacobian_eps
        px, py = self.draw_pixels(weights, self.cfg.information_rays, generator)
        steps = torch.cat([torch.eye(dim), -torch.eye(dim)]) * eps
        poses = torch.stack([pose_of(delta + s) for s in steps])
        rgb = self.render_pixels(poses, px, py).reshape(2, dim, -1)
        jac = ((rgb[0] - rgb[1]) / (2 * eps)).reshape(dim, -1).T  # [P*3, D]
        # scaled to the n_rays independent pixels that the alignment loss assumes
        return jac.T @ jac / self.cfg.pixel_sigma**2 * (self.cfg.n_rays / self.cfg.information_rays)

    def estimate(self, image: torch.Tensor, c2w_init: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, AlignResult]:
        """Camera pose ``c2w [4, 4]`` of ``image [H, W, 3]`` starting from ``c2w_init [4, 4]`` (no prior)."""
        c2w_init = c2w_init.float()
        result = self.align(image, lambda d: c2w_init @ se3_exp(d), 6, seed=seed)
        return (c2w_init @ se3_exp(result.delta)).detach(), result
