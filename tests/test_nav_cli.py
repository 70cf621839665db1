"""``omnifield nav export`` writes the grids; bad options give one-line errors (exit code 2)."""

import numpy as np

from omnifield.apps.nav.exports import load_grids_npz
from omnifield.cli import main


def test_nav_export_room(tmp_path):
    assert main(["nav", "export", "--scene", "room", "--out", str(tmp_path), "--voxel", "0.2", "--slice-z", "1.0"]) == 0
    spec, arrays = load_grids_npz(tmp_path / "grid.npz")
    assert spec.shape == (22, 22, 12)
    occ = arrays["occupancy"].astype(bool)
    assert occ[:, :, 0].all()  # the floor slab
    assert not occ[11, 11, 6] or arrays["esdf"][11, 11, 6] < 0
    assert (np.sign(arrays["esdf"]) < 0).sum() == occ.sum()
    for name in ("occupied.ply", "map.pgm", "map.pgm.yaml"):
        assert (tmp_path / name).stat().st_size > 0


def test_nav_export_needs_one_source(tmp_path, capsys):
    assert main(["nav", "export", "--out", str(tmp_path)]) == 2
    assert "a run folder RUN or --scene room" in capsys.readouterr().err
    assert main(["nav", "export", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
