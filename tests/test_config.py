"""Config registry round trips, overrides, and package __all__ lists."""

import importlib

import pytest

from omnifield.config import config_from_dict, config_to_dict
from omnifield.config_overrides import apply_override
from omnifield.errors import OmnifieldError
from omnifield.fields import RadianceFieldConfig, field_config, field_names


def test_every_field_preset_round_trips_and_builds():
    for name in field_names():
        cfg = field_config(name)
        assert config_from_dict(config_to_dict(cfg)) == cfg


def test_unknown_type_and_key_are_named():
    d = config_to_dict(RadianceFieldConfig())
    d["encoding"]["type"] = "nope"
    with pytest.raises(OmnifieldError, match="unknown config type 'nope'"):
        config_from_dict(d)
    d = config_to_dict(RadianceFieldConfig())
    d["encoding"]["levels"] = 3
    with pytest.raises(OmnifieldError, match="unknown key 'levels'"):
        config_from_dict(d)


def test_overrides():
    cfg = apply_override(RadianceFieldConfig(), "encoding.log2_hashmap_size=15")
    assert cfg.encoding.log2_hashmap_size == 15
    cfg = apply_override(cfg, "aabb=-1,-1,-1,1,1,1")
    assert cfg.aabb == (-1, -1, -1, 1, 1, 1)
    with pytest.raises(OmnifieldError, match="has no option 'bogus'"):
        apply_override(cfg, "encoding.bogus=1")
    with pytest.raises(OmnifieldError, match="expected a number"):
        apply_override(cfg, "geo_feat_dim=many")


@pytest.mark.parametrize("module", ["omnifield.fields"])
def test_all_lists_existing_names(module):
    mod = importlib.import_module(module)
    for name in getattr(mod, "__all__", []):
        assert hasattr(mod, name), f"{module}.__all__ lists missing {name}"
