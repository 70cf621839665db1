"""Memory a field config will need, estimated from the config alone (before anything is allocated).

Hash tables dominate every preset that can grow large: ``--set field.encoding.log2_hashmap_size=30``
asks for tens of GiB. :func:`check_field_fits` refuses such a config with the estimate instead of
letting the allocation fail (or swap) after the data are loaded.
"""

from __future__ import annotations

import dataclasses

from omnifield.fields.hashgrid import HashGridConfig, level_layout
from omnifield.resources import require_memory

# float32 parameter + gradient + Adam's two moments
TRAINING_BYTES_PER_PARAMETER = 16


def hash_table_parameters(cfg, n_input_dims: int = 3) -> int:
    """Parameters of every hash grid found in the (nested) dataclass config ``cfg``: rows x features, summed."""
    if isinstance(cfg, HashGridConfig):
        try:
            return sum(level_layout(n_input_dims, cfg)[1]) * cfg.n_features_per_level
        except ValueError:  # an invalid grid: the builder reports it
            return 0
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return sum(hash_table_parameters(getattr(cfg, f.name), n_input_dims) for f in dataclasses.fields(cfg))
    if isinstance(cfg, (list, tuple)):
        return sum(hash_table_parameters(item, n_input_dims) for item in cfg)
    return 0


def check_field_fits(cfg, where: str, n_input_dims: int = 3) -> None:
    """Refuse (:class:`OmnifieldError`) a field config whose hash tables cannot be trained in the available memory."""
    n = hash_table_parameters(cfg, n_input_dims)
    require_memory(n * TRAINING_BYTES_PER_PARAMETER,
                   f"{where}: training its hash tables ({n / 1e6:.0f} M parameters with gradients and Adam state)")
