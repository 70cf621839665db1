"""State filter fusing a quadrotor process model with photometric pose measurements (Adamkiewicz et al. 2022).

State: position ``p``, velocity ``v`` (world) and attitude ``R`` (body-to-world) with a 9-D error state
``delta = (dp, dv, dtheta)``, ``R <- R exp(dtheta)``, and covariance ``P [9, 9]``. The robot is modelled
with an ideal attitude loop: each step it is commanded a thrust ``f`` and attitude ``R_c`` (from the plan's
differential flatness) and moves as::

    p' = p + v dt,   v' = v + (R_c e_z f / m - g e_z) dt,   R' = R_c
    P' = F P F^T + Q,   F = [[I, dt I, 0], [0, I, 0], [0, 0, 0]]

The update aligns the camera image with the field: the error state maximises photometric likelihood times
the Gaussian prior ``N(0, P')`` (the Mahalanobis term), and the posterior covariance is the inverse of the
Gauss-Newton information plus ``P'^{-1}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnifield.apps.nav.estimator import AlignResult, PhotometricEstimator
from omnifield.apps.nav.flatness import QuadrotorParams
from omnifield.apps.nav.lie import so3_exp

# Camera axes (OpenGL: x right, y up, looking down -z) in the body frame (x forward, y left, z up).
BODY_FROM_CAMERA = torch.tensor([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def camera_pose(position: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Camera-to-world ``[..., 4, 4]`` of a forward-looking camera at the body centre ``[..., 3]``, ``[..., 3, 3]``."""
    top = torch.cat([rotation @ BODY_FROM_CAMERA.to(rotation), position[..., None]], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


@dataclass
class FilterNoise:
    """Process noise standard deviations per step and the initial uncertainty."""

    position: float = 0.005  # m
    velocity: float = 0.02  # m/s
    attitude: float = 0.02  # rad
    initial_position: float = 0.05
    initial_velocity: float = 0.05
    initial_attitude: float = 0.05

    def diagonal(self, initial: bool = False) -> torch.Tensor:
        """Variances ``[9]`` of (position, velocity, attitude)."""
        p, v, r = ((self.initial_position, self.initial_velocity, self.initial_attitude) if initial
                   else (self.position, self.velocity, self.attitude))
        return torch.tensor([p] * 3 + [v] * 3 + [r] * 3) ** 2


class StateFilter:
    """Tracks ``position [3]``, ``velocity [3]``, ``rotation [3, 3]`` and ``covariance [9, 9]``."""

    def __init__(self, position, velocity, rotation, noise: FilterNoise | None = None, quad: QuadrotorParams | None = None):
        self.noise = noise or FilterNoise()
        self.quad = quad or QuadrotorParams()
        self.position = torch.as_tensor(position, dtype=torch.float32).clone()
        self.velocity = torch.as_tensor(velocity, dtype=torch.float32).clone()
        self.rotation = torch.as_tensor(rotation, dtype=torch.float32).clone()
        self.covariance = torch.diag(self.noise.diagonal(initial=True))

    def predict(self, thrust: float, commanded_rotation: torch.Tensor, dt: float) -> None:
        """Process model step with the commanded ``thrust`` (N) and attitude ``[3, 3]``."""
        acc = commanded_rotation[:, 2] * thrust / self.quad.mass - torch.tensor([0.0, 0.0, self.quad.gravity])
        self.position = self.position + self.velocity * dt
        self.velocity = self.velocity + acc * dt
        self.rotation = commanded_rotation.float().clone()
        f = torch.eye(9)
        f[:3, 3:6] = torch.eye(3) * dt
        f[6:, 6:] = 0.0
        self.covariance = f @ self.covariance @ f.T + torch.diag(self.noise.diagonal())

    def camera_pose_of(self, delta: torch.Tensor) -> torch.Tensor:
        """Camera pose ``[4, 4]`` of the state moved by the error ``delta [9]``."""
        return camera_pose(self.position + delta[:3], self.rotation @ so3_exp(delta[6:]))

    def update(self, image: torch.Tensor, estimator: PhotometricEstimator, seed: int = 0) -> AlignResult:
        """Photometric measurement update from ``image [H, W, 3]`` (maximum a posteriori over ``delta``)."""
        prior_information = torch.linalg.inv(self.covariance)
        result = estimator.align(image, self.camera_pose_of, 9, prior_information, seed=seed)
        delta = result.delta
        self.position = self.position + delta[:3]
        self.velocity = self.velocity + delta[3:6]
        self.rotation = self.rotation @ so3_exp(delta[6:])
        posterior = torch.linalg.inv(result.information + prior_information)
        self.covariance = 0.5 * (posterior + posterior.T)
        return result
