"""One field interface: every field satisfies its protocol, the box mapping is exact, checkpoints keep their keys."""

import math

import pytest
import torch

from omnifield import fields
from omnifield.apps.nav.scenes import pillar_room
from omnifield.distill.pvd import point_outputs, share_color_head
from omnifield.fields import (
    BoxField,
    BoxMapping,
    BoxUnknownLike,
    PointFeatureFieldLike,
    RadianceFieldLike,
    SDFFieldLike,
)
from omnifield.fields.frequency import FrequencyConfig
from omnifield.fields.gaussians import GaussianScene
from omnifield.fields.image_field import ImageFieldConfig
from omnifield.fields.radiance import RadianceFieldConfig
from omnifield.fields.registry import field_config, field_names
from omnifield.fields.sdf_field import SDFFieldConfig
from omnifield.pde.field import PDEField, UnknownConfig
from omnifield.pde.insr.field import SpatialFieldConfig


def _gaussians(n: int = 3) -> GaussianScene:
    """``n`` isotropic Gaussians of scale 0.1 and opacity 0.5 at ``(i, 0, 0)``."""
    means = torch.zeros(n, 3)
    means[:, 0] = torch.arange(n, dtype=torch.float32)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1)
    return GaussianScene(means, torch.full((n, 3), math.log(0.1)), quats, torch.zeros(n), torch.zeros(n, 1, 3))


@pytest.mark.parametrize("name", field_names())
def test_every_preset_is_a_radiance_field_in_the_shared_feature_space(name):
    field = field_config(name).build()
    assert isinstance(field, RadianceFieldLike) and isinstance(field, PointFeatureFieldLike)
    assert not isinstance(field, SDFFieldLike) and not isinstance(field, BoxUnknownLike)
    x, d = torch.rand(16, 3) * 2 - 1, torch.randn(16, 3)
    rgb, sigma = field(x, d)
    assert field.aabb.shape == (6,)
    assert torch.equal(field.density(x), sigma) and torch.equal(field.rgb(x, d), rgb)


def test_gaussian_scene_is_a_radiance_field_whose_box_holds_its_gaussians():
    scene = _gaussians()
    assert isinstance(scene, RadianceFieldLike) and not isinstance(scene, PointFeatureFieldLike)
    # cut-off at alpha 1/255: Mahalanobis radius sqrt(2 ln(255 * 0.5)) times the scale 0.1
    r = 0.1 * math.sqrt(2.0 * math.log(127.5))
    assert torch.allclose(scene.aabb, torch.tensor([-r, -r, -r, 2.0 + r, r, r]), atol=1e-6)
    assert "aabb" not in scene.state_dict()  # not a checkpoint entry
    scene.aabb = torch.tensor([-1.0, -1.0, -1.0, 3.0, 1.0, 1.0])  # an owner sets the capture's box
    assert scene.aabb.tolist() == [-1.0, -1.0, -1.0, 3.0, 1.0, 1.0]
    x = torch.tensor([[0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    out = point_outputs(scene, x, torch.ones(2, 3))
    assert out.features is None and torch.allclose(out.logit.exp(), scene.density(x).clamp_min(1e-12))
    assert not share_color_head(scene, field_config("hashgrid").build())


def test_sdf_fields_and_analytic_scenes():
    field = SDFFieldConfig(aabb=(-1.0, -2.0, -1.0, 1.0, 2.0, 3.0)).build()
    assert isinstance(field, SDFFieldLike) and not isinstance(field, RadianceFieldLike)
    x = torch.rand(8, 3)
    assert torch.equal(field.sdf(x), field(x))
    assert torch.equal(field.normalize(torch.tensor([[-1.0, -2.0, -1.0], [1.0, 2.0, 3.0]])),
                       torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    room = pillar_room()  # the navigation worlds are both
    assert isinstance(room, RadianceFieldLike) and isinstance(room, SDFFieldLike)
    assert torch.equal(room.rgb(x, x), room(x, x)[0])


def test_image_fields_answer_uv_with_rgb():
    field = ImageFieldConfig().build()
    assert not isinstance(field, RadianceFieldLike)
    assert field(torch.rand(5, 2)).shape == (5, 3)


@pytest.mark.parametrize("make", [
    lambda: PDEField((-1.0, 0.0), (1.0, 2.0), 2, UnknownConfig(width=8, n_hidden_layers=1)),
    lambda: PDEField((-1.0, 0.0), (1.0, 2.0), 2, UnknownConfig(encoding="frequency", arch="modified", width=8)),
    lambda: SpatialFieldConfig(n_in=2, n_out=2, box=(-1.0, 0.0, 1.0, 2.0)).build(),
    lambda: SpatialFieldConfig(n_in=2, n_out=2, box=(-1.0, 0.0, 1.0, 2.0), periodic=True,
                               encoding=FrequencyConfig(n_frequencies=2)).build(),
])
def test_pde_and_insr_unknowns_share_the_box_field(make):
    field = make()
    assert isinstance(field, BoxField) and isinstance(field, BoxUnknownLike)
    assert not isinstance(field, RadianceFieldLike)
    x = torch.tensor([[-1.0, 0.0], [1.0, 2.0], [0.0, 0.5]])
    h, s = field.features(x)
    assert torch.equal(s, torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 0.25]]))
    assert torch.equal(field(x), field.decode(h, s)) and field(x).shape == (3, 2)
    assert torch.equal(field.box.scale(torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_box_mapping_maps_the_corners_to_the_unit_cube_and_back():
    lo, hi = torch.tensor([-1.5, 0.25, 2.0]), torch.tensor([0.5, 4.25, 2.5])
    box = BoxMapping.from_bounds(torch.cat([lo, hi]).tolist())
    corners = torch.cartesian_prod(*([torch.tensor([0.0, 1.0])] * 3))  # [8, 3] of 0/1
    world = torch.where(corners > 0, hi, lo)
    assert torch.equal(box(world), corners)
    assert torch.equal(box.inverse(corners), world)
    assert torch.equal(box.bounds, torch.cat([lo, hi]))
    x = torch.rand(10, 3, dtype=torch.float64)
    assert torch.allclose(box(box.inverse(x)), x, atol=1e-12)  # float64 points keep float64
    with pytest.raises(ValueError, match="aabb must be"):
        RadianceFieldConfig(aabb=(0.0, 0.0, 0.0, 1.0, -1.0, 1.0)).build()


# state_dict keys as stored in checkpoints written before the fields shared BoxMapping/BoxField
KEYS = {
    "radiance": ["encoding.table", "density_decoder.layers.0.weight", "density_decoder.layers.0.bias",
                 "density_decoder.layers.1.weight", "density_decoder.layers.1.bias", "appearance.embedding.weight",
                 "color_decoder.layers.0.weight", "color_decoder.layers.0.bias", "color_decoder.layers.1.weight",
                 "color_decoder.layers.1.bias", "color_decoder.layers.2.weight", "color_decoder.layers.2.bias"],
    "sdf": ["encoding.table", "decoder.layers.0.weight", "decoder.layers.0.bias", "decoder.layers.1.weight",
            "decoder.layers.1.bias", "decoder.layers.2.weight", "decoder.layers.2.bias"],
    "pde_modified": ["harmonics", "decoder.layers.0.weight", "decoder.layers.0.bias", "decoder.layers.1.weight",
                     "decoder.layers.1.bias", "decoder.layers.2.weight", "decoder.layers.2.bias",
                     "decoder.layers.3.weight", "decoder.layers.3.bias", "decoder.layers.4.weight",
                     "decoder.layers.4.bias", "gates.0.weight", "gates.0.bias", "gates.1.weight", "gates.1.bias"],
    "pde_cam": ["harmonics", "decoder.grids", "decoder.mlp.layers.0.weight", "decoder.mlp.layers.0.bias",
                "decoder.mlp.layers.1.weight", "decoder.mlp.layers.1.bias", "decoder.mlp.layers.2.weight",
                "decoder.mlp.layers.2.bias", "decoder.mlp.layers.3.weight", "decoder.mlp.layers.3.bias",
                "decoder.mlp.layers.4.weight", "decoder.mlp.layers.4.bias"],
    "insr": ["decoder.layers.0.weight", "decoder.layers.0.bias", "decoder.layers.1.weight", "decoder.layers.1.bias",
             "decoder.layers.2.weight", "decoder.layers.2.bias", "decoder.layers.3.weight", "decoder.layers.3.bias"],
}
BUILD = {
    "radiance": lambda: RadianceFieldConfig(appearance_dim=4, n_images=2).build(),
    "sdf": lambda: SDFFieldConfig().build(),
    "pde_modified": lambda: PDEField((-1.0, 0.0), (1.0, 2.0), 2, UnknownConfig(arch="modified", n_harmonics=2), (0,)),
    "pde_cam": lambda: PDEField((-1.0, 0.0), (1.0, 2.0), 2, UnknownConfig(encoding="cam")),
    "insr": lambda: SpatialFieldConfig(n_in=2, n_out=2, box=(-1.0, -1.0, 2.0, 2.0), periodic=True).build(),
}


@pytest.mark.parametrize("name", sorted(KEYS))
def test_checkpoint_keys_are_unchanged(name):
    field = BUILD[name]()
    assert list(field.state_dict()) == KEYS[name]
    field.load_state_dict(BUILD[name]().state_dict())  # strict: nothing missing, nothing unexpected


def test_the_package_exports_the_protocols():
    for name in ("RadianceFieldLike", "PointFeatureFieldLike", "SDFFieldLike", "ImageFieldLike", "BoxUnknownLike",
                 "BoxMapping", "BoxField"):
        assert name in fields.__all__
    assert all(hasattr(fields, name) for name in fields.__all__)
