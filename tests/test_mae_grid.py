"""Field -> grid sampling against analytic fields, grid files, and labelled grids of procedural scenes."""

import numpy as np
import pytest
import torch
from torch import nn

from omnifield.apps.mae.dataset import list_grids, load_grid_stack, scene_grid, write_scene_grids
from omnifield.apps.mae.grid import (
    compare_grids,
    grid_shape,
    load_grid,
    sample_field_grid,
    save_grid,
    symmetric_directions,
)
from omnifield.apps.mae.scene import CLASS_NAMES, SCENE_AABB, SceneField, generate_scene
from omnifield.errors import OmnifieldError

AABB = (-1.0, -0.5, 0.0, 1.0, 0.5, 0.5)


class AnalyticField(nn.Module):
    """sigma = 20 (1 + x); rgb = (0.5 + 0.25 sin(3y), 0.3 + 0.2 z + 0.2 d_x, 0.5 + 0.3 d_z)."""

    def density(self, x):
        return 20 * (1 + x[..., 0])

    def forward(self, x, d):
        rgb = torch.stack([0.5 + 0.25 * torch.sin(3 * x[..., 1]), 0.3 + 0.2 * x[..., 2] + 0.2 * d[..., 0],
                           0.5 + 0.3 * d[..., 2]], -1)
        return rgb, self.density(x)


def _centres_reference(aabb, shape):
    """Voxel centres written out with plain loops."""
    lo, hi = np.array(aabb[:3]), np.array(aabb[3:])
    out = np.zeros((*shape, 3))
    for i in range(shape[0]):
        for j in range(shape[1]):
            for k in range(shape[2]):
                out[i, j, k] = lo + (np.array([i, j, k]) + 0.5) * (hi - lo) / np.array(shape)
    return out


def test_grid_shape_scales_the_longest_side():
    assert grid_shape(AABB, 16) == (16, 8, 4)
    with pytest.raises(OmnifieldError):
        grid_shape((0, 0, 0, 1, -1, 1), 8)


def test_sampler_reproduces_an_analytic_field_with_symmetric_directions():
    grid = sample_field_grid(AnalyticField(), AABB, resolution=8, delta=0.01, chunk=37)
    shape = grid.rgba.shape[1:]
    c = _centres_reference(AABB, shape)
    sigma = 20 * (1 + c[..., 0])
    np.testing.assert_allclose(grid.rgba[3], 1 - np.exp(-sigma * 0.01), atol=1e-6)
    np.testing.assert_allclose(grid.rgba[0], 0.5 + 0.25 * np.sin(3 * c[..., 1]), atol=1e-6)
    np.testing.assert_allclose(grid.rgba[1], 0.3 + 0.2 * c[..., 2], atol=1e-6)  # mean of d_x is zero
    np.testing.assert_allclose(grid.rgba[2], 0.5, atol=1e-6)
    torch.testing.assert_close(symmetric_directions().mean(0), torch.zeros(3), atol=1e-7, rtol=0)


def test_sampler_averages_colour_over_camera_directions_and_supersamples():
    origins = torch.tensor([[0.0, 0.0, 5.0], [4.0, 0.0, 0.0], [0.0, -3.0, 1.0]])
    grid = sample_field_grid(AnalyticField(), AABB, resolution=4, supersample=3, view_origins=origins)
    shape = grid.rgba.shape[1:]
    c = _centres_reference(AABB, shape)
    # sigma is linear in x, so its mean over the symmetric sub-voxel pattern is the centre value
    np.testing.assert_allclose(grid.rgba[3], 1 - np.exp(-20 * (1 + c[..., 0]) * 0.01), atol=1e-6)
    # reference colour: sigma-weighted mean over sub-points of the mean over cameras
    step = (np.array(AABB[3:]) - np.array(AABB[:3])) / np.array(shape)
    offsets = (np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) / 3 - 0.5
    sub = c[..., None, :] + offsets * step  # [..., 27, 3]
    d = sub[..., None, :] - origins.numpy()  # [..., 27, K, 3]
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    blue = 0.5 + 0.3 * d[..., 2].mean(-1)
    sigma = 20 * (1 + sub[..., 0])
    np.testing.assert_allclose(grid.rgba[2], (sigma * blue).sum(-1) / sigma.sum(-1), atol=1e-5)


def test_save_load_roundtrip_and_bad_files(tmp_path):
    grid = scene_grid(generate_scene(0), resolution=8)
    path = save_grid(grid, tmp_path / "g.npz")
    back = load_grid(path)
    np.testing.assert_allclose(back.rgba, grid.rgba, atol=1e-3)  # stored as float16
    np.testing.assert_array_equal(back.labels, grid.labels)
    np.testing.assert_allclose(back.boxes, grid.boxes)
    assert back.meta["resolution"] == 8 and back.aabb == SCENE_AABB
    assert not list(tmp_path.glob("*.tmp*"))
    with pytest.raises(OmnifieldError, match="npz"):
        save_grid(grid, tmp_path / "g.bin")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(OmnifieldError, match="junk.npz"):
        load_grid(tmp_path / "junk.npz")


def test_scene_grid_equals_sampling_the_scene_as_a_field():
    scene = generate_scene(7)
    direct = scene_grid(scene, resolution=12, supersample=2)
    sampled = sample_field_grid(SceneField(scene), SCENE_AABB, 12, supersample=2, view_dirs=torch.tensor([[0.0, 0, 1]]))
    np.testing.assert_allclose(direct.rgba, sampled.rgba, atol=1e-5)
    assert compare_grids(direct, sampled)["solid_iou"] == 1.0


def test_scene_grid_labels_voxels_by_their_primitive():
    scene = generate_scene(9)
    grid = scene_grid(scene, resolution=16, supersample=2)
    assert grid.labels.shape == (16, 16, 16) and grid.labels.max() < len(CLASS_NAMES)
    assert np.all((grid.labels > 0) == (grid.rgba[3] > 0))  # labelled iff some sub-point is solid
    centre = np.array(SCENE_AABB[:3]) + (np.argwhere(grid.rgba[3] > 0.99) + 0.5) * 3 / 16
    owners = scene.owner(torch.tensor(centre, dtype=torch.float32))
    full = np.argwhere(grid.rgba[3] > 0.99)
    np.testing.assert_array_equal(grid.labels[tuple(full.T)], scene.labels[owners.numpy()])


def test_write_and_stack_scene_grids(tmp_path):
    paths = write_scene_grids(tmp_path, range(3), resolution=8)
    assert list_grids(tmp_path) == paths
    rgba, labels = load_grid_stack(paths, with_labels=True)
    assert rgba.shape == (3, 4, 8, 8, 8) and labels.shape == (3, 8, 8, 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OmnifieldError, match="no .npz"):
        list_grids(tmp_path / "empty")
    with pytest.raises(OmnifieldError, match="does not exist"):
        list_grids(tmp_path / "missing")


def test_grid_from_a_trained_run_uses_its_field_box_and_cameras(tmp_path, capsys):
    from omnifield.apps.mae.from_run import grid_from_run, training_camera_centres
    from omnifield.apps.mae.raycast import write_blender_scene
    from omnifield.apps.recon.config import TrainConfig
    from omnifield.apps.recon.run import Run
    from omnifield.cli import main
    from omnifield.fields.frequency import FrequencyConfig
    from omnifield.fields.mlp import MLPConfig
    from omnifield.fields.radiance import RadianceFieldConfig
    from omnifield.renderers.volume import VolumeRendererConfig

    write_blender_scene(generate_scene(1), tmp_path / "scene", n_train=4, n_test=1, size=8)
    field_cfg = RadianceFieldConfig(encoding=FrequencyConfig(n_frequencies=2), aabb=(-1.0, -1.0, -1.0, 1.0, 1.0, 0.5),
                                    density_decoder=MLPConfig(width=16), color_decoder=MLPConfig(width=16))
    run = Run.create(tmp_path / "run", "mlp", field_cfg, VolumeRendererConfig(), TrainConfig(), str(tmp_path / "scene"))
    run.save(0, {}, {})
    centres = training_camera_centres(tmp_path / "scene", max_views=2)
    assert centres.shape == (2, 3) and torch.allclose(centres.norm(dim=1), torch.full((2,), 4.0), atol=0.5)
    grid = grid_from_run(tmp_path / "run", resolution=8, max_views=2)
    expected = sample_field_grid(run.field, field_cfg.aabb, 8, view_origins=centres)
    assert grid.rgba.shape == (4, 8, 8, 6)
    np.testing.assert_allclose(grid.rgba, expected.rgba, atol=1e-6)
    out = tmp_path / "g.npz"
    assert main(["mae", "grid", str(tmp_path / "run"), "--out", str(out), "--resolution", "8"]) == 0
    assert load_grid(out).rgba.shape == (4, 8, 8, 6)
    assert main(["mae", "grid", str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_compare_grids_scores_known_differences():
    ref = scene_grid(generate_scene(2), resolution=8)
    empty = type(ref)(rgba=np.zeros_like(ref.rgba), aabb=ref.aabb)
    scores = compare_grids(empty, ref)
    assert scores["solid_iou"] == 0.0 and scores["psnr_rgb_solid"] is None
    expected = -10 * np.log10((ref.rgba[3] ** 2).mean())
    assert scores["psnr_alpha"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(OmnifieldError, match="shapes differ"):
        compare_grids(scene_grid(generate_scene(2), resolution=4), ref)
