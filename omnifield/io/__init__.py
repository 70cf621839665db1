"""Files: atomic writes, safetensors checkpoints, run folders, images and video, meshes, point clouds, 3DGS .ply."""

from omnifield import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "atomic": ["atomic_path", "write_bytes_atomic", "write_text_atomic"],
    "checkpoint": ["load_checkpoint", "load_module_state", "load_optimizer_state", "module_state",
                   "optimizer_state", "save_checkpoint"],
    "mesh": ["extract_mesh", "save_mesh"],
    "points": ["read_point_cloud", "save_points_ply"],
    "run_folder": ["claim_output", "describe_output"],
    "splat_ply": ["load_splat_ply", "save_splat_ply"],
    "video": ["colorize_depth", "write_png", "write_video"],
})
