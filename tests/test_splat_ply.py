"""3DGS .ply export/import: round trip through plyfile, the standard property layout, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from omnifield.errors import OmnifieldError
from omnifield.fields.gaussians import GaussianScene
from omnifield.io.splat_ply import load_splat_ply, save_splat_ply


def _scene(n: int = 50, degree: int = 3) -> GaussianScene:
    g = torch.Generator().manual_seed(0)
    k = (degree + 1) ** 2
    return GaussianScene(
        torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g),
        torch.randn(n, generator=g), torch.randn(n, k, 3, generator=g),
    )  # fmt: skip


@pytest.mark.parametrize("degree", [0, 3])
def test_round_trip(tmp_path, degree):
    scene = _scene(degree=degree)
    path = tmp_path / "scene.ply"
    save_splat_ply(scene, path)
    back = load_splat_ply(path)
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest"):
        torch.testing.assert_close(getattr(back, name).data, getattr(scene, name).data, rtol=0, atol=0)
    assert back.max_sh_degree == degree


def test_standard_layout(tmp_path):
    """Property names/order of the reference 3DGS writer; f_rest channel-major; raw logit/log/quaternion."""
    scene = _scene(n=4)
    path = tmp_path / "scene.ply"
    save_splat_ply(scene, path)
    ply = PlyData.read(str(path))
    assert ply.header.startswith("ply\nformat binary_little_endian 1.0")
    names = [p.name for p in ply["vertex"].properties]
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(45)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert names == expected
    v = ply["vertex"]
    # f_rest_1 is the second red coefficient (band 1, index 2 overall); f_rest_15 the first green one
    assert np.allclose(v["f_rest_1"], scene.sh_rest.data[:, 1, 0].numpy())
    assert np.allclose(v["f_rest_15"], scene.sh_rest.data[:, 0, 1].numpy())
    assert np.allclose(v["opacity"], scene.opacity_logits.data.numpy())
    assert np.allclose(v["rot_0"], scene.quats.data[:, 0].numpy())


def test_reads_file_written_by_plain_plyfile(tmp_path):
    """A file built field by field with plyfile (as other tools write it) loads with the right values."""
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    vertex = np.zeros(2, dtype=[(n, "f4") for n in names])
    vertex["x"] = [1.0, 2.0]
    vertex["scale_1"] = [-3.0, -4.0]
    vertex["rot_0"] = 1.0
    vertex["opacity"] = [0.0, 2.0]
    path = tmp_path / "other.ply"
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))
    scene = load_splat_ply(path)
    assert scene.max_sh_degree == 0 and len(scene) == 2
    assert scene.means.data[:, 0].tolist() == [1.0, 2.0]
    assert torch.allclose(scene.scales()[:, 1], torch.exp(torch.tensor([-3.0, -4.0])))
    assert torch.allclose(scene.opacities(), torch.sigmoid(torch.tensor([0.0, 2.0])))


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(OmnifieldError, match="missing.ply: file not found"):
        load_splat_ply(tmp_path / "missing.ply")
    junk = tmp_path / "junk.ply"
    junk.write_text("not a ply")
    with pytest.raises(OmnifieldError, match="junk.ply"):
        load_splat_ply(junk)
    mesh = tmp_path / "points.ply"
    PlyData([PlyElement.describe(np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")]), "vertex")]).write(str(mesh))
    with pytest.raises(OmnifieldError, match="missing properties"):
        load_splat_ply(mesh)
