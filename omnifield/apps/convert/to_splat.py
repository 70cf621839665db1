"""Field -> Gaussians: splats initialised from the teacher's density and fitted to the teacher's renders.

The teacher (any radiance field) is rendered once from the training cameras and random sphere poses
(:mod:`omnifield.distill.poses`); Gaussians start at points drawn where the teacher is dense, coloured by the teacher
(:func:`omnifield.apps.splat.init.points_from_density`), and are optimised with the 3DGS photometric loss
(``0.8 L1 + 0.2 (1 - SSIM)``) on those renders. No density control: the count stays as initialised.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from tqdm import tqdm

from omnifield.apps.splat.init import points_from_density
from omnifield.apps.splat.train import LEARNING_RATES, scene_scale_of
from omnifield.distill.poses import join_cameras, sphere_cameras
from omnifield.fields.gaussians import GaussianScene
from omnifield.losses.photometric import photometric_loss
from omnifield.renderers.cameras import Cameras
from omnifield.renderers.splat.renderer import SplatRenderer
from omnifield.renderers.volume import VolumeRenderer


@torch.no_grad()
def teacher_renders(teacher: nn.Module, renderer: VolumeRenderer, cameras: Cameras, background: torch.Tensor,
                    progress: bool = True) -> torch.Tensor:
    """Images ``[V, H, W, 3]`` of the teacher from every camera, on ``background [3]``."""
    return torch.stack([renderer.render_image(teacher, cameras, i, background)["rgb"].clamp(0, 1)
                        for i in tqdm(range(len(cameras)), desc="teacher renders", disable=not progress, leave=False)])


def distill_to_splat(teacher: nn.Module, renderer: VolumeRenderer, train_cameras: Cameras, steps: int,
                     n_gaussians: int = 20000, n_sphere_views: int = 32, n_train_views: int = 32,
                     sh_degree: int = 1, seed: int = 0, minutes: float = 0.0,
                     progress: bool = True) -> tuple[GaussianScene, dict]:
    """Fit a :class:`GaussianScene` to ``teacher``; returns it and ``{"steps", "seconds"}``."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(train_cameras), generator=g)[:n_train_views]
    cameras = join_cameras(train_cameras[pick], sphere_cameras(train_cameras, n_sphere_views, g))
    background = torch.ones(3)
    targets = teacher_renders(teacher, renderer, cameras, background, progress)
    points, colors = points_from_density(teacher, n_gaussians, g)
    scene = GaussianScene.from_points(points, colors, sh_degree=sh_degree)
    scale = scene_scale_of(cameras)
    optimizer = torch.optim.Adam(
        [{"params": [getattr(scene, k)], "lr": LEARNING_RATES[k] * (scale if k == "means" else 1.0)}
         for k in scene.gaussian_parameter_names()], eps=1e-15)
    splat = SplatRenderer(background=(1.0, 1.0, 1.0))
    start, step = time.perf_counter(), 0
    for step in tqdm(range(1, steps + 1), desc="fitting splats", disable=not progress, unit="step"):
        scene.set_sh_degree_for_step(step, max(steps // (sh_degree + 1), 1))
        view = int(torch.randint(0, len(cameras), (1,), generator=g))
        loss = photometric_loss(splat.render_camera(scene, cameras, view)["rgb"], targets[view])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if minutes > 0 and time.perf_counter() - start > minutes * 60:
            break
    return scene.eval(), {"steps": step, "seconds": time.perf_counter() - start}
