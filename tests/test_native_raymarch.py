"""Native ray marcher vs the torch twin and hand-computed samples."""

from __future__ import annotations

import math

import torch

from omnifield.renderers._raymarch_native import try_march_rays
from omnifield.renderers.raymarch import _march_rays, march_rays
from omnifield.renderers.rays import ray_aabb_intersect
from tests._native import native_or_skip

AABB = torch.tensor([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5])


def _native(*args):
    native_or_skip("raymarch")
    out = try_march_rays(*args)
    assert out is not None, "native raymarch kernel did not load"
    return out


def _random_scene(n_rays: int, res: int, seed: int, occupied: float = 0.1):
    gen = torch.Generator().manual_seed(seed)
    occupancy = torch.rand(res, res, res, generator=gen) < occupied
    origins = torch.randn(n_rays, 3, generator=gen) * 2.5  # some inside the box, most outside
    targets = (torch.rand(n_rays, 3, generator=gen) - 0.5) * 4.0  # some rays miss the box
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    near, far = ray_aabb_intersect(origins, directions, AABB)
    return origins, directions, near, far, occupancy


def _sample_keys(ray_indices, t_starts, near, step):
    """``ray * 2^20 + k`` for each sample (k = its step number along the ray)."""
    k = torch.round((t_starts - near[ray_indices]) / step).long()
    return ray_indices * 2**20 + k


def test_hand_computed_samples():
    """One ray along +x through [0,1]^3 (G = 4) with a single occupied cell and a short last step."""
    occupancy = torch.zeros(4, 4, 4, dtype=torch.bool)
    occupancy[1, 1, 1] = True  # x in [0.25, 0.5), y and z in [0.25, 0.5)
    origins = torch.tensor([[-1.0, 0.375, 0.375], [-1.0, 0.375, 0.375], [-1.0, 0.9, 0.9]])
    directions = torch.tensor([[1.0, 0.0, 0.0]] * 3)
    near = torch.tensor([1.0, 1.4, 1.0])
    far = torch.tensor([1.95, 1.47, 2.0])
    aabb = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    ray_indices, t_starts, t_ends = _native(origins, directions, near, far, occupancy, aabb, 1 / 16)
    # ray 0: t_k = 1 + k/16, midpoints x = (k + 0.5)/16, cell 1 holds k = 4..7
    # ray 1: t = 1.4, 1.4625 (end clamped to 1.47); midpoints x = 0.43125, 0.46625 -> both in cell 1
    # ray 2: passes through y = z = 0.9, never occupied
    assert ray_indices.tolist() == [0, 0, 0, 0, 1, 1]
    expected_starts = torch.tensor([1.25, 1.3125, 1.375, 1.4375, 1.4, 1.4 + 1 / 16])
    expected_ends = torch.tensor([1.3125, 1.375, 1.4375, 1.5, 1.4 + 1 / 16, 1.47])
    torch.testing.assert_close(t_starts, expected_starts)
    torch.testing.assert_close(t_ends, expected_ends)
    assert ray_indices.dtype == torch.int64 and t_starts.dtype == torch.float32


def test_native_matches_twin_on_random_rays():
    args = _random_scene(800, 32, seed=0, occupied=0.5)
    step = 3 * math.sqrt(3) / 256
    native = _native(*args, AABB, step)
    twin = _march_rays(*args, AABB, step)
    near = args[2]
    keys_native = _sample_keys(native[0], native[1], near, step)
    keys_twin = _sample_keys(twin[0], twin[1], near, step)
    common = torch.isin(keys_native, keys_twin).sum().item()
    assert keys_twin.numel() > 10_000
    assert common >= 0.999 * max(keys_native.numel(), keys_twin.numel())
    # packed order: by ray, then by t
    ray_indices, t_starts = native[0], native[1]
    assert bool((ray_indices[1:] >= ray_indices[:-1]).all())
    same_ray = ray_indices[1:] == ray_indices[:-1]
    assert bool((t_starts[1:][same_ray] > t_starts[:-1][same_ray]).all())


def test_native_exact_away_from_cell_boundaries():
    """Rays whose every candidate midpoint is >= 1e-5 (in cell units) from a cell face match exactly."""
    origins, directions, near, far, occupancy = _random_scene(400, 24, seed=1, occupied=0.3)
    step = 3 * math.sqrt(3) / 200
    res = occupancy.shape[0]
    # all candidate samples: the twin on a fully occupied grid
    ray_ids, t0, t1 = _march_rays(origins, directions, near, far, torch.ones_like(occupancy), AABB, step)
    mids = origins[ray_ids] + directions[ray_ids] * ((t0 + t1) * 0.5)[:, None]
    u = (mids - AABB[:3]) / (AABB[3:] - AABB[:3]) * res
    near_face = ((u - torch.round(u)).abs() < 1e-5).any(dim=-1)
    near_far = (far[ray_ids] - t0).abs() < 1e-5
    bad_rays = torch.unique(ray_ids[near_face | near_far])
    good = torch.ones(origins.shape[0], dtype=torch.bool)
    good[bad_rays] = False
    assert good.sum() > 0.8 * origins.shape[0]
    native = _native(origins[good], directions[good], near[good], far[good], occupancy, AABB, step)
    twin = _march_rays(origins[good], directions[good], near[good], far[good], occupancy, AABB, step)
    assert twin[0].numel() > 1000
    for a, b in zip(native, twin):
        assert torch.equal(a, b)


def test_empty_results_and_missed_rays():
    origins, directions, near, far, occupancy = _random_scene(50, 8, seed=2)
    empty = torch.zeros_like(occupancy)
    ray_indices, t_starts, t_ends = _native(origins, directions, near, far, empty, AABB, 0.01)
    assert ray_indices.shape == t_starts.shape == t_ends.shape == (0,)
    start, end = torch.maximum(near, far), torch.minimum(near, far)  # start >= end: no segment
    missed = _native(origins, directions, start, end, torch.ones_like(occupancy), AABB, 0.01)
    assert missed[0].numel() == 0


def test_public_march_rays_uses_native():
    native_or_skip("raymarch")
    args = _random_scene(64, 16, seed=3)
    out = march_rays(*args, AABB, 0.02)
    for a, b in zip(out, _native(*args, AABB, 0.02)):
        assert torch.equal(a, b)
