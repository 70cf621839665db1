"""Checkpoints: round trip, atomic replacement, clear errors for corrupt files."""

import pytest
import torch

from omnifield.errors import OmnifieldError
from omnifield.io.atomic import atomic_path
from omnifield.io.checkpoint import (
    load_checkpoint, load_module_state, load_optimizer_state, optimizer_state, save_checkpoint,
)


def test_round_trip_with_optimizer(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.rand(5, 3)).sum().backward()
    opt.step()
    tensors, meta = optimizer_state(opt)
    save_checkpoint(tmp_path / "c.safetensors", {**{f"m/{k}": v for k, v in model.state_dict().items()}, **tensors},
                    {"step": 3, "optimizer": meta})
    loaded, lmeta = load_checkpoint(tmp_path / "c.safetensors")
    assert lmeta["step"] == 3
    model2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    load_module_state("m", model2, loaded, "c")
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    load_optimizer_state(opt2, loaded, lmeta["optimizer"])
    x = torch.rand(5, 3)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.ones(100)}, {"step": 1})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OmnifieldError, match="corrupt or truncated"):
        load_checkpoint(path)
    from safetensors.torch import save_file
    save_file({"a": torch.ones(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(OmnifieldError, match="not an omnifield checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")
    with pytest.raises(OmnifieldError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_architecture_mismatch_is_named(tmp_path):
    save_checkpoint(tmp_path / "c.safetensors", {"m/weight": torch.ones(2, 2), "m/bias": torch.ones(2)}, {})
    tensors, _ = load_checkpoint(tmp_path / "c.safetensors")
    with pytest.raises(OmnifieldError, match="expects"):
        load_module_state("m", torch.nn.Linear(3, 2), tensors, "c")


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.ones(3)}, {"step": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash during write")
    tensors, meta = load_checkpoint(path)
    assert meta["step"] == 1 and torch.equal(tensors["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_stale_temporaries_are_removed(tmp_path):
    from omnifield.io.atomic import remove_stale_temporaries

    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, {"a": torch.ones(1)}, {})
    (tmp_path / ".checkpoint.safetensors.abc123.tmp.safetensors").write_bytes(b"partial")
    (tmp_path / "keep.txt").write_text("x")
    assert remove_stale_temporaries(path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors", "keep.txt"]
