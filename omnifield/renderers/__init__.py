"""How a field becomes pixels: cameras, rays, occupancy grids, marching, compositing (splatting: ``.splat``)."""

from omnifield import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "camera_opt": ["CameraOptimizer", "se3_exp"],
    "cameras": ["Cameras", "look_at", "orbit_cameras", "spiral_cameras"],
    "distortion": ["distort", "undistort"],
    "occupancy": ["OccupancyGrid", "OccupancyGridConfig"],
    "raymarch": ["march_rays"],
    "rays": ["ray_aabb_intersect"],
    "space": ["SCENE_TYPES", "choose_space", "contract", "detect_scene_type", "ndc_rays", "nearest_depth"],
    "volrend": ["accumulate_along_rays", "render_weight_from_density"],
    "volume": ["RenderOutput", "VolumeRenderer", "VolumeRendererConfig"],
})
