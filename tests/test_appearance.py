"""Per-image appearance codes: the colour head's input, the renderer's per-sample gather, the "auto"
options of a capture, and the held-out protocol (mean code)."""

from pathlib import Path

import pytest
import torch

from omnifield.apps.recon.config import TrainConfig
from omnifield.apps.recon.run import DEPTH_WEIGHT_PHOTOS, DISTORTION_WEIGHT_PHOTOS, resolve_capture_options
from omnifield.data.blender import PosedImages, load_blender
from omnifield.errors import OmnifieldError
from omnifield.fields import field_config
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.radiance import RadianceFieldConfig
from omnifield.fields.sh import spherical_harmonics
from omnifield.renderers.volume import VolumeRenderer, VolumeRendererConfig

LEGO = Path(__file__).resolve().parents[1] / "data" / "lego_200"


def _field(dim: int, n_images: int = 3):
    torch.manual_seed(0)
    enc = HashGridConfig(n_levels=2, log2_hashmap_size=8, max_resolution=16)
    return RadianceFieldConfig(encoding=enc, appearance_dim=dim, n_images=n_images).build()


def test_code_joins_the_colour_head_input_and_never_the_density():
    field = _field(4)
    x, d = torch.rand(50, 3) * 2 - 1, torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    codes = field.appearance(torch.randint(0, 3, (50,)))
    rgb, sigma = field(x, d, codes)
    feats = field.point_features(x)
    reference = torch.sigmoid(field.color_decoder(torch.cat([feats[:, 1:], spherical_harmonics(d, 4), codes], -1)))
    torch.testing.assert_close(rgb, reference)
    rgb_other, sigma_other = field(x, d, field.appearance(torch.zeros(50, dtype=torch.long)))
    assert torch.equal(sigma, sigma_other) and not torch.allclose(rgb, rgb_other)
    # no code: the mean of the training codes (the held-out protocol)
    mean = field.appearance.embedding.weight.mean(0).expand(50, -1)
    torch.testing.assert_close(field(x, d)[0], field(x, d, mean)[0])
    with pytest.raises(ValueError, match="no appearance codes"):
        _field(0)(x, d, codes)


def test_render_rays_gives_each_sample_its_ray_code():
    field = _field(4)
    renderer = VolumeRenderer(field.aabb, VolumeRendererConfig(sampler="uniform", n_samples=16))
    origins = torch.tensor([[0.0, 0.0, 3.0]]).repeat(6, 1)
    dirs = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, -1.0]]) + 0.1 * torch.randn(6, 3), dim=-1)
    ids = torch.tensor([0, 1, 2, 2, 1, 0])
    together = renderer.render_rays(field, origins, dirs, appearance=field.appearance(ids)).rgb
    for i in range(3):  # each image's rays alone, with its code for every ray
        rows = ids == i
        alone = renderer.render_rays(field, origins[rows], dirs[rows],
                                     appearance=field.appearance.embedding.weight[i].expand(int(rows.sum()), -1))
        torch.testing.assert_close(together[rows], alone.rgb)
    assert not torch.allclose(together, renderer.render_rays(field, origins, dirs).rgb)  # the codes were used


@pytest.fixture(scope="module")
def lego():
    return load_blender(LEGO, "train", downscale=16)


def test_auto_leaves_both_off_and_explicit_values_are_kept(lego):
    field_cfg = field_config("hashgrid")
    f, t = resolve_capture_options(field_cfg, TrainConfig(), lego)  # lego_200 is RGBA
    assert (t.camera_opt, t.appearance_dim, f.appearance_dim) == ("off", 0, 0)
    photos = PosedImages(lego.images[..., :3], lego.cameras, lego.names)
    f, t = resolve_capture_options(field_cfg, TrainConfig(), photos)
    assert (t.camera_opt, t.appearance_dim, f.appearance_dim) == ("off", 0, 0)
    f, t = resolve_capture_options(field_cfg, TrainConfig(appearance_dim=32), photos)
    assert (f.appearance_dim, f.n_images) == (32, len(lego.images))
    f, t = resolve_capture_options(field_cfg, TrainConfig(camera_opt="off", appearance_dim=0), photos)
    assert (t.camera_opt, t.appearance_dim, f.appearance_dim) == ("off", 0, 0)
    f, t = resolve_capture_options(field_cfg, TrainConfig(camera_opt="SE3", appearance_dim=8), lego)
    assert (t.camera_opt, f.appearance_dim, f.n_images) == ("SE3", 8, len(lego.images))
    # without the training views "auto" stays off; an explicit code size needs them
    assert resolve_capture_options(field_cfg, TrainConfig(), None)[1].camera_opt == "off"
    with pytest.raises(OmnifieldError, match="training views"):
        resolve_capture_options(field_cfg, TrainConfig(appearance_dim=8), None)


@pytest.mark.parametrize("name, photos", [("distortion_weight", DISTORTION_WEIGHT_PHOTOS),
                                          ("depth_weight", DEPTH_WEIGHT_PHOTOS)])
def test_scene_losses_are_on_for_photos_of_scenes_and_off_for_objects(lego, name, photos):
    field_cfg = field_config("hashgrid")
    weights = {space: getattr(resolve_capture_options(field_cfg, TrainConfig(), lego, space)[1], name)
               for space in ("box", "ndc", "contract")}
    assert weights == {"box": 0.0, "ndc": photos, "contract": photos}
    assert getattr(resolve_capture_options(field_cfg, TrainConfig(**{name: 0.0}), lego, "ndc")[1], name) == 0
    assert getattr(resolve_capture_options(field_cfg, TrainConfig(**{name: 0.05}), lego)[1], name) == 0.05


def test_train_config_checks_the_new_options():
    for bad in ({"camera_opt": "SO3"}, {"camera_opt_lr": 0.0}, {"camera_opt_l2": -1.0}, {"appearance_dim": -2},
                {"distortion_weight": -0.5}, {"distortion_weight": float("nan")}, {"depth_weight": -0.5},
                {"depth_weight": float("nan")}, {"depth_rays": 0.0}, {"depth_rays": 1.5}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_codes_fit_a_per_image_brightness_change_that_a_field_without_them_cannot(lego, tmp_path):
    """Two copies of the same views, the second darkened by 0.5: without codes the best a field can do
    is the average colour (an analytic PSNR ceiling); with codes it fits both copies."""
    from omnifield.apps.recon.evaluate import evaluate
    from omnifield.apps.recon.run import Run
    from omnifield.apps.recon.trainer import Trainer
    from tests.test_backends_recon import _tiny

    torch.set_num_threads(1)  # tiny tensors: thread hand-offs would dominate on a loaded machine
    ids = torch.tensor([0, 1, 0, 1])
    h, w = lego.images.shape[1:3]
    colour = torch.tensor([0.8, 0.6, 0.4])
    scale = torch.tensor([1.0, 1.0, 0.5, 0.5])  # per image
    rgb = (scale[:, None] * colour)[:, None, None, :].expand(4, h, w, 3)
    data = PosedImages(torch.cat([rgb, torch.ones(4, h, w, 1)], -1), lego.cameras[ids], ["a0", "a1", "b0", "b1"])
    # the best colour without codes is 0.75 * colour on every ray: error 0.25 * colour on every pixel
    ceiling = float(-10 * torch.log10((0.25 * colour).square().mean()))
    psnr = {}
    for dim in (0, 8):
        torch.manual_seed(0)
        train = TrainConfig(steps=40, batch_rays=256, target_samples=0, checkpoint_every_s=1e9, camera_opt="off",
                            appearance_dim=dim)
        run = Run.create(tmp_path / str(dim), "hashgrid", _tiny(field_config("hashgrid")),
                         VolumeRendererConfig(sampler="uniform", n_samples=8), train, "", 16, data)
        Trainer(run, data, progress=False).fit()
        psnr[dim] = evaluate(run, data, progress=False, training_views=True)["psnr"]
    assert psnr[0] < ceiling + 0.1
    assert psnr[8] > ceiling + 10.0, (psnr, ceiling)
