"""Scene spaces: where a radiance field lives for each kind of capture.

- ``"box"``: an object inside the field's box (synthetic scenes, captures with alpha masks). Rays are
  used as given.
- ``"ndc"``: forward-facing captures (LLFF). Rays are moved into a reference camera frame (the average
  camera) and warped into normalised device coordinates, as the original NeRF does for LLFF: the
  frustum from the near plane ``n`` to infinity becomes ``[-1, 1]^3``, and steps that are constant in
  NDC depth are evenly spaced in disparity. Straight rays stay straight, so the occupancy grid and
  the constant-step marcher work unchanged in that box.
- ``"contract"``: unbounded 360° captures. Rays are moved into a frame where the cameras lie inside
  the unit cube, and points are contracted (mip-NeRF 360 / nerfacto, L-infinity norm):
  ``x`` stays where ``|x|_inf <= 1``, beyond it maps to ``(2 - 1/|x|) x/|x|``, so all of space fits
  in ``[-2, 2]^3``. Samples are placed linearly in distance up to 1 and in disparity beyond it,
  which is an even comb in contracted space.

:func:`choose_space` picks the space from the cameras (see its docstring); ``--scene-type`` overrides.
"""

from __future__ import annotations

import torch

SCENE_TYPES = ("object", "forward", "unbounded")
SPACE_OF_SCENE = {"object": "box", "forward": "ndc", "unbounded": "contract"}
NDC_HALF_EXTENT = 1.25  # NDC x/y bound: other cameras than the reference see a little beyond +-1
FORWARD_MIN_ALIGNMENT = 0.85  # |mean viewing direction| above this: all views look the same way
NEAR_MARGIN = 0.75  # LLFF's bd_factor: the NDC near plane sits at 3/4 of the nearest scene depth
NDC_STEPS_PER_DIAGONAL = 256  # ~125 steps from the near plane to infinity before skipping (NeRF: 64 + 128)
FOG_DENSITY_BIAS = -1.0  # nerfacto's density shift: a fresh field over a whole scene starts as a thin fog


# ------------------------------------------------------------------ contraction
def contract(x: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` points -> contracted points in ``[-2, 2]^3`` (L-infinity scene contraction)."""
    mag = x.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(mag <= 1.0, torch.ones_like(mag), (2.0 - 1.0 / mag.clamp_min(1.0)) / mag.clamp_min(1.0))
    return x * scale


def contraction_stretch(y: torch.Tensor, cap: float = 1e4) -> torch.Tensor:
    """World length per contracted length along the radius at contracted points ``y [..., 3] -> [...]``:
    1 inside the unit cube, ``1 / (2 - |y|_inf)^2`` beyond (capped)."""
    mag = y.abs().amax(dim=-1)
    return torch.where(mag <= 1.0, torch.ones_like(mag), (2.0 - mag).clamp_min(cap ** -0.5) ** -2)


def spacing(t: torch.Tensor) -> torch.Tensor:
    """Ray distance ``t`` -> spacing coordinate ``s``: ``t/2`` up to 1, ``1 - 1/(2t)`` beyond (in [0, 1))."""
    return torch.where(t < 1.0, 0.5 * t, 1.0 - 0.5 / t.clamp_min(1.0))


def inverse_spacing(s: torch.Tensor) -> torch.Tensor:
    """Spacing coordinate ``s`` in [0, 1) -> ray distance ``t`` (inverse of :func:`spacing`)."""
    return torch.where(s < 0.5, 2.0 * s, 0.5 / (1.0 - s).clamp_min(1e-9))


# ------------------------------------------------------------------------- NDC
def ndc_points(points: torch.Tensor, focal: tuple[float, float], near: float) -> torch.Tensor:
    """Points in a camera frame looking down -z ``[R, 3]`` -> their NDC coordinates ``[R, 3]`` (the map
    under which :func:`ndc_rays` turns rays into straight NDC rays)."""
    fx, fy = focal
    z = torch.where(points[:, 2].abs() < 1e-9, torch.full_like(points[:, 2], -1e-9), points[:, 2])
    return torch.stack([-fx * points[:, 0] / z, -fy * points[:, 1] / z, 1.0 + 2.0 * near / z], dim=-1)


def points_from_ndc(points: torch.Tensor, focal: tuple[float, float], near: float) -> torch.Tensor:
    """NDC coordinates ``[R, 3]`` (``z' < 1``) -> the camera-frame points of :func:`ndc_points` ``[R, 3]`` (its inverse)."""
    fx, fy = focal
    z = 2.0 * near / (points[:, 2] - 1.0).clamp_max(-1e-6)
    return torch.stack([-points[:, 0] * z / fx, -points[:, 1] * z / fy, z], dim=-1)


def ndc_rays(origins: torch.Tensor, directions: torch.Tensor, focal: tuple[float, float],
             near: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays in a camera frame looking down -z ``[R, 3]`` -> NDC origins and unit NDC directions ``[R, 3]``.

    ``focal`` is ``(fx / (W/2), fy / (H/2))`` of the reference camera; ``near`` the near plane (> 0).
    Origins are first moved along their ray onto the plane ``z = -near`` (NeRF's ``ndc_rays``).
    """
    fx, fy = focal
    dz = torch.where(directions[:, 2].abs() < 1e-9, torch.full_like(directions[:, 2], -1e-9), directions[:, 2])
    t = -(near + origins[:, 2]) / dz
    o = origins + t[:, None] * directions
    oz = torch.where(o[:, 2].abs() < 1e-9, torch.full_like(o[:, 2], -1e-9), o[:, 2])
    o_ndc = ndc_points(o, focal, near)
    d_ndc = torch.stack([-fx * (directions[:, 0] / dz - o[:, 0] / oz),
                         -fy * (directions[:, 1] / dz - o[:, 1] / oz),
                         -2.0 * near / oz], dim=-1)
    return o_ndc, d_ndc / d_ndc.norm(dim=-1, keepdim=True).clamp_min(1e-12)


# ------------------------------------------------------------- choosing a space
def _frame(c2w: torch.Tensor, forward: torch.Tensor, exact_up: bool) -> torch.Tensor:
    """World -> frame rotation ``[3, 3]`` (rows: the frame's axes in world coordinates) whose -z is
    ``forward`` and whose y is the cameras' mean up direction. One of the two is kept exactly and the other
    made orthogonal to it: the up direction when ``exact_up`` (unbounded scenes: the cube's faces follow the
    floor), else the forward direction (LLFF's average pose). A forward direction parallel to up is
    replaced by the world axis least aligned with up."""
    up = c2w[:, :3, 1].mean(0)
    up = up / up.norm().clamp_min(1e-12)
    back = -forward / forward.norm().clamp_min(1e-12)
    if float(torch.linalg.cross(up, back).norm()) < 1e-6:
        back = torch.zeros_like(up)
        back[int(up.abs().argmin())] = 1.0
    if exact_up:
        back = back - (back @ up) * up
        back = back / back.norm()
    else:
        up = up - (up @ back) * back
        up = up / up.norm()
    right = torch.linalg.cross(up, back)
    return torch.stack([right, up, back])


def detect_scene_type(c2w: torch.Tensor, has_alpha: bool) -> str:
    """``"object"`` for captures with alpha masks, ``"forward"`` when every camera looks the same way
    (the mean of the unit viewing directions is longer than 0.85, i.e. all within ~30 degrees),
    else ``"unbounded"`` (cameras around the scene). ``c2w [N, 4, 4]``."""
    if has_alpha:
        return "object"
    views = -c2w[:, :3, 2].double()
    views = views / views.norm(dim=-1, keepdim=True)
    if len(c2w) > 1 and float(views.mean(0).norm()) > FORWARD_MIN_ALIGNMENT:
        return "forward"
    return "unbounded"


def choose_space(scene_type: str, c2w: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor, width: int, height: int,
                 near_depth: float | None) -> dict:
    """Renderer settings (fields of ``VolumeRendererConfig``) and the field box for ``scene_type``.

    ``c2w [N, 4, 4]``, ``fx/fy [N]`` of the training cameras; ``near_depth`` is the nearest scene depth
    seen by any camera (from the capture's depth bounds or sparse points; None when unknown).
    Returns renderer settings (``space``, ``space_center``, ``space_rotation``, ``space_scale``, ``ndc_focal``,
    ``ndc_near``, ``near_plane``, ``n_steps_per_diagonal``) and, under ``"field"``, the field's settings
    (``aabb``, the field's and the renderer's box, and ``density_bias``).
    """
    c2w = c2w.double()
    centres = c2w[:, :3, 3]
    if scene_type == "object":
        return {"space": "box"}
    if scene_type == "forward":
        if near_depth is None or not near_depth > 0:
            raise ValueError("a forward-facing scene needs depth bounds or sparse points to place the near plane")
        rotation = _frame(c2w, -c2w[:, :3, 2].mean(0), exact_up=False)
        h = NDC_HALF_EXTENT
        return {"space": "ndc", "space_center": tuple(centres.mean(0).tolist()),
                "space_rotation": tuple(rotation.reshape(-1).tolist()), "space_scale": 1.0,
                "ndc_focal": (float(fx.mean()) / (width / 2), float(fy.mean()) / (height / 2)),
                "ndc_near": NEAR_MARGIN * near_depth, "near_plane": 0.0, "n_steps_per_diagonal": NDC_STEPS_PER_DIAGONAL,
                "field": {"aabb": (-h, -h, -1.0, h, h, 1.0), "density_bias": FOG_DENSITY_BIAS}}
    if scene_type == "unbounded":
        centre = centres.mean(0)
        radius = float((centres - centre).norm(dim=-1).max())
        scale = 1.0 / radius if radius > 1e-9 else 1.0
        rotation = _frame(c2w, -c2w[:, :3, 2].mean(0), exact_up=True)
        near = 0.5 * near_depth * scale if near_depth else 0.05
        return {"space": "contract", "space_center": tuple(centre.tolist()),
                "space_rotation": tuple(rotation.reshape(-1).tolist()), "space_scale": scale,
                "near_plane": float(min(near, 0.2)),
                "field": {"aabb": (-2.0, -2.0, -2.0, 2.0, 2.0, 2.0), "density_bias": FOG_DENSITY_BIAS}}
    raise ValueError(f"scene type must be one of {', '.join(SCENE_TYPES)}, got {scene_type!r}")


def nearest_depth(c2w: torch.Tensor, points: torch.Tensor | None, near_far: torch.Tensor | None) -> float | None:
    """Nearest scene depth over the cameras ``c2w [N, 4, 4]``: the smallest per-image near bound
    (``near_far [N, 2]``) when given, else the 1st percentile of the sparse points' depths
    (``points [P, 3]``) in front of the cameras; None when neither is known."""
    if near_far is not None and len(near_far):
        return float(near_far[:, 0].min())
    if points is None or len(points) < 10:
        return None
    rel = points.double()[None] - c2w[:, None, :3, 3].double()  # [N, P, 3]
    depth = -(rel * c2w[:, None, :3, 2].double()).sum(-1)
    depth = depth[depth > 0]
    return float(torch.quantile(depth[:1_000_000], 0.01)) if depth.numel() else None
