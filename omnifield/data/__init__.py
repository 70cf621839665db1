"""Readers of posed images: Blender, transforms.json (Instant-NGP / nerfstudio), LLFF, COLMAP; ``load_scene``."""

from omnifield import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "blender": ["PosedImages", "load_blender"],
    "colmap": ["load_colmap", "read_colmap_model"],
    "images": ["composite_on", "read_image", "to_uint8"],
    "llff": ["load_llff"],
    "scene": ["Normalization", "Scene", "ScenePoints", "detect_format", "load_scene"],
    "transforms": ["load_transforms"],
})
