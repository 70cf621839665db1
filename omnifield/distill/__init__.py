"""Field -> field distillation: PVD (shared volume features) with PVD-AL active learning."""

from omnifield import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "active": ["ActiveConfig"],
    "poses": ["join_cameras", "sphere_cameras"],
    "pvd": ["Distiller", "PVDConfig"],
    "teacher_images": ["TeacherImages"],
})
