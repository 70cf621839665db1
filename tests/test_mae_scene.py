"""Procedural rooms and their exact ray-cast renders."""

import json
import math

import numpy as np
import pytest
import torch

from omnifield.apps.mae.raycast import camera_rays, intersect_scene, render_view, write_blender_scene
from omnifield.apps.mae.scene import CLASS_NAMES, SCENE_AABB, Scene, generate_scene, scene_from_json
from omnifield.errors import OmnifieldError
from omnifield.renderers.cameras import look_at as look_at_batch


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """One float64 camera-to-world ``[4, 4]`` with world z up."""
    as64 = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return look_at_batch(as64(eye)[None], as64(target), as64([0.0, 0.0, 1.0]))[0].numpy()


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b, c = generate_scene(5), generate_scene(5), generate_scene(6)
    for name in ("kinds", "centers", "sizes", "yaws", "colors", "labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.centers[:3], c.centers[:3]) or a.n_primitives != c.n_primitives


@pytest.mark.parametrize("seed", [0, 3])
def test_scene_inside_box_with_valid_labels_and_boxes_that_hold_their_primitive(seed):
    scene = generate_scene(seed)
    assert scene.labels.min() >= 1 and scene.labels.max() < len(CLASS_NAMES)
    boxes = scene.oriented_boxes()
    assert boxes.shape == (scene.n_primitives, 7)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(10000, 3, generator=gen) * 3 - 1.5
    inside = scene.inside(x)  # [N, M]
    for m in range(scene.n_primitives):
        pts = x[inside[:, m]]
        if len(pts) == 0:
            continue
        c, s, yaw = boxes[m, :3], boxes[m, 3:6], boxes[m, 6]
        d = pts.numpy() - c
        local = np.stack([np.cos(-yaw) * d[:, 0] - np.sin(-yaw) * d[:, 1],
                          np.sin(-yaw) * d[:, 0] + np.cos(-yaw) * d[:, 1], d[:, 2]], 1)
        assert np.all(np.abs(local) <= s / 2 + 1e-5)
        assert np.all(pts.numpy() >= np.array(SCENE_AABB[:3])) and np.all(pts.numpy() <= np.array(SCENE_AABB[3:]))


def test_objects_do_not_overlap():
    scene = generate_scene(11)
    x = torch.rand(20000, 3, generator=torch.Generator().manual_seed(0)) * 3 - 1.5
    inside = scene.inside(x)
    objects = inside[:, 3:]  # floor and walls touch; objects must not intersect each other
    assert int(objects.sum(1).max()) <= 1


def test_owner_on_lattice_matches_pointwise_owner():
    scene = generate_scene(4)
    lo, step, shape = np.array([-1.5, -1.5, -1.5]), np.array([3 / 20, 3 / 24, 3 / 28]), (20, 24, 28)
    fast = scene.owner_on_lattice(lo, step, shape)
    axes = [torch.arange(n, dtype=torch.float64) for n in shape]
    idx = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    points = (torch.from_numpy(lo) + (idx + 0.5) * torch.from_numpy(step)).float().reshape(-1, 3)
    assert torch.equal(fast.reshape(-1), scene.owner(points))


def _single(kind: int, size, yaw=0.0, center=(0.0, 0.0, 0.0)) -> Scene:
    return Scene(np.array([kind]), np.array([center], np.float32), np.array([size], np.float32),
                 np.array([yaw], np.float32), np.array([[0.5, 0.5, 0.5]], np.float32), np.array([3]))


@pytest.mark.parametrize("kind,size,expected", [(2, (1.0, 1.0, 1.0), 4.5), (0, (1.0, 1.0, 1.0), 4.5),
                                                (1, (0.6, 0.6, 2.0), 4.0)])
def test_ray_from_above_hits_top_of_primitive_at_analytic_distance(kind, size, expected):
    scene = _single(kind, size, yaw=0.3)
    t, normal, prim = intersect_scene(scene, torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[0.0, 0.0, -1.0]]))
    assert prim.item() == 0
    assert t.item() == pytest.approx(expected, abs=1e-5)
    torch.testing.assert_close(normal, torch.tensor([[0.0, 0.0, 1.0]]), atol=1e-5, rtol=0)


def test_ray_hits_agree_with_marching_the_inside_test():
    scene = generate_scene(2)
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(150, 3, generator=gen) * 2 - 1
    eye = torch.tensor([2.5, 2.0, 2.5]) + 0.3 * torch.randn(150, 3, generator=gen)
    dirs = torch.nn.functional.normalize(target - eye, dim=-1)
    t, _, prim = intersect_scene(scene, eye, dirs)
    ts = torch.linspace(0.0, 8.0, 2001)
    pts = eye[:, None, :] + ts[None, :, None] * dirs[:, None, :]
    owner = scene.owner(pts.reshape(-1, 3)).reshape(150, -1)
    hit_ref = (owner >= 0).any(1)
    first = (owner >= 0).float().argmax(1)
    # rays grazing an edge can differ by one march step; require near-total agreement
    assert (hit_ref == (prim >= 0)).float().mean() > 0.98
    both = hit_ref & (prim >= 0)
    close = (t[both] - ts[first[both]]).abs() <= 2 * (ts[1] - ts[0]) + 1e-4
    assert close.float().mean() > 0.98
    agree = prim[both] == owner[both, first[both]]
    assert agree.float().mean() > 0.98


def test_look_at_gives_an_opengl_camera_looking_at_the_target():
    c2w = look_at(np.array([3.0, 1.0, 2.0]), np.array([0.0, 0.0, 0.0]))
    np.testing.assert_allclose(c2w[:3, :3].T @ c2w[:3, :3], np.eye(3), atol=1e-12)
    forward = -c2w[:3, 2]
    np.testing.assert_allclose(forward, -np.array([3.0, 1.0, 2.0]) / math.sqrt(14), atol=1e-12)
    _, dirs = camera_rays(c2w, 2, 0.7)
    np.testing.assert_allclose(dirs.mean(0).numpy() / np.linalg.norm(dirs.mean(0)), forward, atol=1e-6)


def test_render_is_transparent_where_rays_miss():
    scene = _single(2, (1.0, 1.0, 1.0))
    image = render_view(scene, look_at(np.array([0.0, -4.0, 0.0]), np.zeros(3)), 32, 0.69)
    assert image.shape == (32, 32, 4)
    assert image[16, 16, 3] == 1 and image[0, 0, 3] == 0 and np.all(image[0, 0, :3] == 0)


def test_blender_scene_is_readable_by_the_data_loader(tmp_path):
    from omnifield.data.blender import load_blender

    scene = generate_scene(3)
    write_blender_scene(scene, tmp_path, n_train=3, n_test=2, size=16)
    train = load_blender(tmp_path, "train")
    assert train.images.shape == (3, 16, 16, 4)
    assert train.images[..., 3].sum() > 0
    meta = json.loads((tmp_path / "transforms_test.json").read_text())
    assert len(meta["frames"]) == 2 and np.asarray(meta["frames"][0]["transform_matrix"]).shape == (4, 4)
    again = scene_from_json(tmp_path / "scene.json")
    np.testing.assert_allclose(again.centers, scene.centers)
    np.testing.assert_array_equal(again.labels, scene.labels)


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(OmnifieldError, match="seed"):
        generate_scene(-1)
    with pytest.raises(OmnifieldError, match="n_train"):
        write_blender_scene(generate_scene(0), tmp_path, n_train=0)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(OmnifieldError, match="bad.json"):
        scene_from_json(tmp_path / "bad.json")
