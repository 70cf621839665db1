"""``benchmarks/pde.py`` finds DeepXDE only where the user says: ``--deepxde`` or ``$DEEPXDE_PYTHON``."""

from pathlib import Path

import pytest

from benchmarks.pde import find_deepxde


def test_deepxde_interpreter_only_from_flag_or_env(monkeypatch, tmp_path):
    monkeypatch.delenv("DEEPXDE_PYTHON", raising=False)
    monkeypatch.setattr(Path, "exists", lambda self: True)  # as if any fixed machine path were there
    monkeypatch.setattr(Path, "is_file", lambda self: True)
    assert find_deepxde(None) is None
    monkeypatch.setenv("DEEPXDE_PYTHON", "/opt/dde/bin/python")
    assert find_deepxde(None) == "/opt/dde/bin/python"
    assert find_deepxde("/other/python") == "/other/python"


def test_missing_deepxde_interpreter_is_an_error(monkeypatch, tmp_path):
    monkeypatch.delenv("DEEPXDE_PYTHON", raising=False)
    with pytest.raises(SystemExit, match="--deepxde .*no such interpreter"):
        find_deepxde(str(tmp_path / "nope" / "python"))
