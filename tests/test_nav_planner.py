"""Planner, A* and grid exports on analytic density fields."""

import numpy as np
import pytest
import torch
from plyfile import PlyData
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from omnifield.apps.nav.astar import astar, path_length, resample_polyline
from omnifield.apps.nav.exports import load_grids_npz, save_grids_npz, save_occupied_ply, save_pgm_slice
from omnifield.apps.nav.grid import GridSpec, occupancy_from_density, sample_density, signed_distance
from omnifield.apps.nav.planner import PlannerConfig, TrajectoryPlanner, heading_yaw
from omnifield.apps.nav.scenes import AnalyticScene
from omnifield.errors import OmnifieldError

BOUNDS = (-1.5, -1.0, -1.0, 1.5, 1.0, 1.0)


@pytest.fixture(scope="module")
def sphere_world():
    return AnalyticScene(sphere_centers=[[0.0, 0.0, 0.0]], sphere_radii=[0.4], bounds=BOUNDS)


@pytest.fixture(scope="module")
def planner(sphere_world):
    # no A* clearance: the A* path grazes the sphere, so avoiding it is the optimiser's job
    return TrajectoryPlanner(sphere_world, BOUNDS, PlannerConfig(n_waypoints=30, clearance=0.0, steps=200))


def test_planner_routes_around_a_sphere_of_density(sphere_world, planner):
    start, goal = [-1.2, 0.05, 0.0], [1.2, 0.0, 0.0]
    plan = planner.plan(start, goal)
    straight = torch.from_numpy(np.linspace(start, goal, 30)).float()
    straight_collision, _, _ = planner.costs(straight, torch.zeros(30), plan.dt)
    init = torch.from_numpy(resample_polyline(plan.astar_path, 30)).float()
    init_collision, _, _ = planner.costs(init, heading_yaw(init), plan.dt)
    assert float(straight_collision) > 100.0
    assert float(init_collision) > 1.0  # the body grazes the sphere along the A* path
    assert plan.collision < 1e-2 * float(init_collision)
    # every body point stays outside the sphere
    body = plan.waypoints[:, None] + (plan.state.rotation[:, None] * planner.body[None, :, None, :]).sum(-1)
    assert float(sphere_world.sdf(body).min()) > 0.0
    torch.testing.assert_close(plan.waypoints[0], torch.tensor(start))
    torch.testing.assert_close(plan.waypoints[-1], torch.tensor(goal))
    assert path_length(plan.waypoints.numpy()) < 1.3 * path_length(plan.astar_path)


def test_replan_starts_from_the_estimate_and_keeps_the_goal(planner):
    plan = planner.plan([-1.2, 0.05, 0.0], [1.2, 0.0, 0.0], steps=50)
    estimate = plan.waypoints[10] + torch.tensor([0.0, 0.05, -0.03])
    velocity = plan.state.velocity[10]
    new = planner.replan(plan, 10, estimate, velocity)
    assert new.waypoints.shape[0] == plan.waypoints.shape[0] - 10
    torch.testing.assert_close(new.waypoints[0], estimate)
    torch.testing.assert_close(new.waypoints[1], estimate + velocity * plan.dt)
    torch.testing.assert_close(new.waypoints[-1], plan.waypoints[-1])
    assert new.collision < 5e-2  # the A* start grazed the sphere with collision > 1


def _grid_dijkstra_cost(free, start, goal, voxel):
    """Reference: Dijkstra (scipy) on the 26-connected graph of free cells."""
    shape = free.shape
    idx = np.arange(free.size).reshape(shape)
    rows, cols, costs = [], [], []
    for d in np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij"), -1).reshape(-1, 3):
        if not d.any():
            continue
        src = tuple(slice(max(0, -k), s - max(0, k)) for k, s in zip(d, shape))
        dst = tuple(slice(max(0, k), s - max(0, -k)) for k, s in zip(d, shape))
        ok = free[src] & free[dst]
        rows.append(idx[src][ok])
        cols.append(idx[dst][ok])
        costs.append(np.full(ok.sum(), np.linalg.norm(d * voxel)))
    graph = coo_matrix((np.concatenate(costs), (np.concatenate(rows), np.concatenate(cols))), shape=(free.size, free.size))
    dist = dijkstra(graph.tocsr(), indices=idx[start])
    return dist[idx[goal]]


def test_astar_is_optimal_against_dijkstra():
    rng = np.random.default_rng(0)
    voxel = np.array([0.1, 0.2, 0.15])
    for _ in range(3):
        free = rng.random((9, 10, 8)) > 0.3
        free[0, 0, 0] = free[-1, -1, -1] = True
        ref = _grid_dijkstra_cost(free, (0, 0, 0), (8, 9, 7), voxel)
        if not np.isfinite(ref):
            with pytest.raises(OmnifieldError):
                astar(free, (0, 0, 0), (8, 9, 7), voxel)
            continue
        path = astar(free, (0, 0, 0), (8, 9, 7), voxel)
        assert free[tuple(path.T)].all()
        assert np.abs(np.diff(path, axis=0)).max() == 1
        assert path_length(path * voxel) == pytest.approx(ref, rel=1e-9)


def test_astar_rejects_blocked_goal():
    free = np.ones((4, 4, 4), bool)
    free[3, 3, 3] = False
    with pytest.raises(OmnifieldError, match="goal"):
        astar(free, (0, 0, 0), (3, 3, 3))


def test_esdf_of_a_sphere_matches_the_analytic_distance(sphere_world):
    spec = GridSpec.with_voxel_size(BOUNDS, 0.05)
    occ = occupancy_from_density(sample_density(sphere_world, spec, supersample=1), 1.0)
    esdf = signed_distance(occ, spec.voxel_size)
    true = np.linalg.norm(spec.centers(), axis=-1) - 0.4
    assert np.abs(esdf - true).max() < 2 * 0.05
    assert ((esdf < 0) == occ).all()


def test_exports_round_trip(tmp_path, sphere_world):
    spec = GridSpec.with_voxel_size(BOUNDS, 0.1)
    density = sample_density(sphere_world, spec)
    occ = occupancy_from_density(density, 1.0)
    esdf = signed_distance(occ, spec.voxel_size)
    save_grids_npz(tmp_path / "g.npz", spec, density, occ, esdf)
    spec2, arrays = load_grids_npz(tmp_path / "g.npz")
    assert spec2.shape == spec.shape and np.allclose(spec2.bounds, spec.bounds)
    assert (arrays["occupancy"].astype(bool) == occ).all()
    np.testing.assert_allclose(arrays["esdf"], esdf, rtol=1e-6)

    save_occupied_ply(tmp_path / "occ.ply", spec, occ, esdf)
    vertex = PlyData.read(str(tmp_path / "occ.ply"))["vertex"]
    pts = np.stack([vertex["x"], vertex["y"], vertex["z"]], -1)
    assert len(pts) == occ.sum() and (np.linalg.norm(pts, axis=-1) < 0.4 + 0.1).all()

    pgm, meta = save_pgm_slice(tmp_path / "map.pgm", GridSpec(BOUNDS, (30, 20, 20)), occ, height=0.0)
    raw = pgm.read_bytes()
    header, pixels = raw[: len(b"P5\n30 20\n255\n")], np.frombuffer(raw[len(b"P5\n30 20\n255\n") :], np.uint8)
    assert header == b"P5\n30 20\n255\n"
    img = pixels.reshape(20, 30)
    assert img[10, 15] == 0 and img[0, 0] == 254  # sphere centre occupied, corner free
    assert "resolution: 0.1" in meta.read_text()
    assert not list(tmp_path.glob(".*.tmp"))


def test_bad_inputs_raise_clear_errors(tmp_path, planner):
    with pytest.raises(OmnifieldError, match="start"):
        planner.plan([0.0, 0.0, 0.0], [1.2, 0.0, 0.0])
    (tmp_path / "junk.npz").write_bytes(b"nope")
    with pytest.raises(OmnifieldError, match="junk.npz"):
        load_grids_npz(tmp_path / "junk.npz")


def test_planner_routes_around_gaussian_splats():
    """Splats are a field like any other: a ball of opaque Gaussians is avoided through ``density``."""
    from omnifield.fields.gaussians import GaussianScene

    g = torch.Generator().manual_seed(0)
    direction = torch.randn(300, 3, generator=g)
    points = direction / direction.norm(dim=-1, keepdim=True) * 0.3 * torch.rand(300, 1, generator=g) ** (1 / 3)
    splats = GaussianScene.from_points(points, sh_degree=0, opacity=0.9)
    with torch.no_grad():
        splats.log_scales.fill_(float(np.log(0.05)))
    planner = TrajectoryPlanner(splats, BOUNDS, PlannerConfig(n_waypoints=24, clearance=0.1, steps=80))
    start, goal = [-1.2, 0.05, 0.0], [1.2, 0.0, 0.0]
    plan = planner.plan(start, goal)
    straight = torch.from_numpy(np.linspace(start, goal, 24)).float()
    straight_collision, _, _ = planner.costs(straight, torch.zeros(24), plan.dt)
    assert float(straight_collision) > 100 * max(plan.collision, 1e-3)
    body = plan.waypoints[:, None] + (plan.state.rotation[:, None] * planner.body[None, :, None, :]).sum(-1)
    assert float(body.norm(dim=-1).min()) > 0.3  # no body point inside the ball of splat centres
