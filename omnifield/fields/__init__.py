"""Field backends: encodings, decoders and fields (what a scene is)."""

from omnifield.fields.box import BoxField, BoxMapping
from omnifield.fields.encoding import Encoding
from omnifield.fields.frequency import Frequency, FrequencyConfig
from omnifield.fields.gaussian_embedding import GaussianEmbedding, GaussianEmbeddingConfig
from omnifield.fields.hashgrid import HashGrid, HashGridConfig
from omnifield.fields.mlp import MLP, MLPConfig
from omnifield.fields.protocol import (
                                       BoxUnknownLike,
                                       ImageFieldLike,
                                       PointFeatureFieldLike,
                                       RadianceFieldLike,
                                       SDFFieldLike,
)
from omnifield.fields.radiance import RadianceField, RadianceFieldConfig
from omnifield.fields.registry import build_field, field_config, field_names, register_field
from omnifield.fields.sh import SphericalHarmonics, spherical_harmonics

__all__ = [
    "BoxField",
    "BoxMapping",
    "BoxUnknownLike",
    "Encoding",
    "Frequency",
    "FrequencyConfig",
    "GaussianEmbedding",
    "GaussianEmbeddingConfig",
    "HashGrid",
    "HashGridConfig",
    "ImageFieldLike",
    "MLP",
    "MLPConfig",
    "PointFeatureFieldLike",
    "RadianceField",
    "RadianceFieldConfig",
    "RadianceFieldLike",
    "SDFFieldLike",
    "SphericalHarmonics",
    "build_field",
    "field_config",
    "field_names",
    "register_field",
    "spherical_harmonics",
]
