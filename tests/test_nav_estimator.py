"""Photometric pose estimation and the state filter on a synthetic analytic field."""

import math

import pytest
import torch

from omnifield.apps.nav.estimator import EstimatorConfig, PhotometricEstimator, PinholeCamera
from omnifield.apps.nav.filter import FilterNoise, StateFilter, camera_pose
from omnifield.apps.nav.lie import rotation_angle_deg, so3_exp
from omnifield.apps.nav.scenes import AnalyticScene
from omnifield.renderers.cameras import look_at
from omnifield.renderers.occupancy import OccupancyGridConfig
from omnifield.renderers.volume import VolumeRenderer, VolumeRendererConfig

AABB = (-1.5, -1.5, -0.2, 1.5, 1.5, 1.5)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    scene = AnalyticScene(
        sphere_centers=[[0.3, 0.2, 0.35], [-0.4, 0.5, 0.25], [0.1, -0.5, 0.3]],
        sphere_radii=[0.35, 0.25, 0.3],
        box_centers=[[0.0, 0.0, -0.1], [0.0, 1.4, 0.6]],
        box_half_sizes=[[1.5, 1.5, 0.1], [1.5, 0.1, 0.6]],
        bounds=AABB,
    )
    renderer = VolumeRenderer(AABB, VolumeRendererConfig(n_steps_per_diagonal=256, grid=OccupancyGridConfig(resolution=32)))
    renderer.update_occupancy(scene, 0)
    camera = PinholeCamera.from_fov(32, 24, 70)
    estimator = PhotometricEstimator(scene, renderer, camera, EstimatorConfig(n_rays=128, steps=80, lr=0.01))
    true_c2w = look_at(torch.tensor([[0.0, -1.4, 0.8]]), torch.tensor([0.0, 0.3, 0.3]), torch.tensor([0.0, 0.0, 1.0]))[0]
    image = renderer.render_image(scene, camera.cameras(true_c2w[None]), 0)["rgb"]
    return scene, estimator, true_c2w, image


def _perturb(c2w, translation_m, angle_deg, seed):
    g = torch.Generator().manual_seed(seed)
    axis, direction = torch.randn(3, generator=g), torch.randn(3, generator=g)
    delta = torch.eye(4)
    delta[:3, :3] = so3_exp(axis / axis.norm() * math.radians(angle_deg))
    delta[:3, 3] = direction / direction.norm() * translation_m
    return c2w @ delta


def test_estimator_recovers_a_known_pose_perturbation(setup):
    _, estimator, true_c2w, image = setup
    init = _perturb(true_c2w, 0.08, 6.0, seed=3)
    est, result = estimator.estimate(image, init)
    assert float((est[:3, 3] - true_c2w[:3, 3]).norm()) < 0.015
    assert float(rotation_angle_deg(est[:3, :3], true_c2w[:3, :3])) < 1.0
    assert result.history[-1] < 0.2 * result.history[0]
    # the photometric information is a symmetric positive definite 6x6 matrix
    torch.testing.assert_close(result.information, result.information.T, rtol=1e-4, atol=1e-4)
    assert float(torch.linalg.eigvalsh(result.information).min()) > 0


def test_filter_prediction_follows_the_process_model():
    noise = FilterNoise()
    f = StateFilter([0.0, 0.0, 1.0], [0.5, 0.0, 0.0], torch.eye(3), noise)
    p0 = f.covariance.clone()
    tilt = so3_exp(torch.tensor([0.0, 0.1, 0.0]))
    f.predict(thrust=9.81 / math.cos(0.1), commanded_rotation=tilt, dt=0.1)
    # level flight while tilted: horizontal acceleration g tan(0.1), no vertical acceleration
    torch.testing.assert_close(f.position, torch.tensor([0.05, 0.0, 1.0]))
    torch.testing.assert_close(f.velocity, torch.tensor([0.5 + 0.981 * math.tan(0.1), 0.0, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(f.rotation, tilt)
    ref = p0[:3, :3] + 0.01 * p0[3:6, 3:6] + noise.position**2 * torch.eye(3)
    torch.testing.assert_close(f.covariance[:3, :3], ref)
    torch.testing.assert_close(f.covariance[:3, 3:6], 0.1 * p0[3:6, 3:6])


def test_filter_update_pulls_the_state_to_the_image(setup):
    scene, estimator, true_c2w, image = setup
    true_rotation = true_c2w[:3, :3] @ torch.linalg.inv(camera_pose(torch.zeros(3), torch.eye(3))[:3, :3])
    offset = torch.tensor([0.04, -0.03, 0.02])
    f = StateFilter(true_c2w[:3, 3] + offset, [0.0, 0.0, 0.0], true_rotation, FilterNoise(initial_position=0.05))
    torch.testing.assert_close(camera_pose(f.position, f.rotation)[:3, :3], true_c2w[:3, :3])
    before = f.covariance[:3, :3].trace()
    f.update(image, estimator)
    assert float((f.position - true_c2w[:3, 3]).norm()) < 0.3 * float(offset.norm())
    assert float(f.covariance[:3, :3].trace()) < 0.5 * float(before)
    assert float(torch.linalg.eigvalsh(f.covariance).min()) > 0
