"""NeRF-MAE: radiance fields as (RGB, alpha) grids, masked 3-D autoencoder pre-training, voxel labelling.

- :mod:`~omnifield.apps.mae.scene`: seeded procedural rooms (primitives, classes, oriented boxes)
- :mod:`~omnifield.apps.mae.raycast`: exact ray-primitive renders in Blender format
- :mod:`~omnifield.apps.mae.grid`: any field -> grid; npz I/O; grid comparison
- :mod:`~omnifield.apps.mae.dataset`: labelled grids straight from scenes; stacking grids
- :mod:`~omnifield.apps.mae.model`: 3-D ViT MAE, masking, loss, voxel segmenter
- :mod:`~omnifield.apps.mae.train`: pre-training, fine-tuning, metrics
"""

from omnifield.apps.mae.grid import RadianceGrid, load_grid, sample_field_grid, save_grid
from omnifield.apps.mae.model import MAE3D, MAE3DConfig, VoxelSegmenter, masked_reconstruction_loss, random_token_mask
from omnifield.apps.mae.scene import CLASS_NAMES, Scene, SceneField, generate_scene

__all__ = [
    "CLASS_NAMES",
    "MAE3D",
    "MAE3DConfig",
    "RadianceGrid",
    "Scene",
    "SceneField",
    "VoxelSegmenter",
    "generate_scene",
    "load_grid",
    "masked_reconstruction_loss",
    "random_token_mask",
    "sample_field_grid",
    "save_grid",
]
