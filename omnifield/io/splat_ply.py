"""The standard 3DGS ``.ply`` (binary little-endian), as written by the reference code and read by splat viewers.

One ``vertex`` element with float32 properties, in this order::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..(3*(K-1)-1)  opacity  scale_0..2  rot_0..3

``opacity`` is the logit, ``scale_*`` the log scales, ``rot_*`` the quaternion (w, x, y, z), and
``f_rest`` is stored channel-major (all red coefficients, then green, then blue). Normals are zero.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from omnifield.errors import OmnifieldError
from omnifield.fields.gaussians import GaussianScene
from omnifield.io.atomic import atomic_path


def _property_names(n_rest: int) -> list[str]:
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(n_rest)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def save_splat_ply(scene: GaussianScene, path: str | Path) -> None:
    """Write ``scene`` as a 3DGS ``.ply`` (atomically)."""
    from plyfile import PlyData, PlyElement

    n = len(scene)
    with torch.no_grad():
        rest = scene.sh_rest.detach().cpu().transpose(1, 2).reshape(n, -1)  # [N, 3*(K-1)] channel-major
        columns = [
            scene.means.detach().cpu(), torch.zeros(n, 3), scene.sh_dc.detach().cpu().reshape(n, 3), rest,
            scene.opacity_logits.detach().cpu()[:, None], scene.log_scales.detach().cpu(), scene.quats.detach().cpu(),
        ]  # fmt: skip
        data = torch.cat(columns, dim=1).float().numpy()
    names = _property_names(rest.shape[1])
    vertex = np.empty(n, dtype=[(name, "f4") for name in names])
    for i, name in enumerate(names):
        vertex[name] = data[:, i]
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")], byte_order="<").write(str(tmp))


def load_splat_ply(path: str | Path) -> GaussianScene:
    """Read a 3DGS ``.ply``; :class:`OmnifieldError` naming the file when it is not one."""
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise OmnifieldError(f"{path}: file not found")
    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"]
    except Exception as exc:  # noqa: BLE001 - plyfile raises several types on bad files
        raise OmnifieldError(f"{path}: not a readable .ply with a 'vertex' element ({exc})") from None
    names = {p.name for p in vertex.properties}
    n_rest = sum(1 for name in names if name.startswith("f_rest_"))
    k = n_rest // 3 + 1
    if n_rest % 3 or math.isqrt(k) ** 2 != k or k > 16:
        raise OmnifieldError(f"{path}: {n_rest} f_rest_* properties do not form SH degree 0..3 (expected 0, 9, 24 or 45)")
    missing = [name for name in _property_names(n_rest) if name not in names and name not in ("nx", "ny", "nz")]
    if missing:
        raise OmnifieldError(f"{path}: not a 3DGS splat file, missing properties {', '.join(missing[:6])}")
    col = lambda *keys: torch.from_numpy(np.stack([np.asarray(vertex[key], dtype=np.float32) for key in keys], 1))  # noqa: E731
    n = len(vertex.data)
    dc = col("f_dc_0", "f_dc_1", "f_dc_2").reshape(n, 1, 3)
    rest = col(*[f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, k - 1).transpose(1, 2) if n_rest else torch.zeros(n, 0, 3)
    return GaussianScene(
        col("x", "y", "z"),
        col("scale_0", "scale_1", "scale_2"),
        col("rot_0", "rot_1", "rot_2", "rot_3"),
        col("opacity")[:, 0],
        torch.cat([dc, rest], dim=1),
    )
