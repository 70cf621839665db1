"""Checkpoints: round trip, atomic replacement, clear errors for corrupt files."""

import pytest
import torch

from omnifield.errors import OmnifieldError
from omnifield.io.atomic import atomic_path
from omnifield.io.checkpoint import (
    load_checkpoint,
    load_module_state,
    load_optimizer_state,
    optimizer_state,
    save_checkpoint,
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


def _save_step(path, step: int) -> None:
    save_checkpoint(path, {"a": torch.arange(64.0) + step, "b": torch.ones(3, dtype=torch.int64)}, {"step": step})


def _assert_intact(path, step: int) -> None:
    tensors, meta = load_checkpoint(path)
    assert meta["step"] == step and torch.equal(tensors["a"], torch.arange(64.0) + step)
    assert [p.name for p in path.parent.iterdir()] == [path.name], "a temporary file was left behind"


def test_disk_full_is_one_line_naming_the_folder_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    import omnifield.io.atomic as atomic

    path = tmp_path / "checkpoint.safetensors"
    _save_step(path, 1)

    class FullDisk:  # a file that takes a few bytes, then the disk is full
        def __init__(self, name, mode):
            self.fh = open(name, mode)

        def write(self, data):
            self.fh.write(bytes(data[:5]))
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(atomic, "open", FullDisk, raising=False)
    with pytest.raises(OmnifieldError) as err:
        _save_step(path, 2)
    message = str(err.value)
    assert message.startswith(f"{tmp_path}: cannot write checkpoint.safetensors: no space left on device")
    assert "\n" not in message and "previous file is intact" in message
    monkeypatch.undo()
    _assert_intact(path, 1)


def test_unwritable_folder_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    import errno
    import os
    import tempfile

    from omnifield.io.atomic import write_text_atomic

    path = tmp_path / "checkpoint.safetensors"
    _save_step(path, 1)
    tmp_path.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: refuse the way a read-only folder does
        def refuse(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied", kwargs.get("dir"))
        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    try:
        for write in (lambda: _save_step(path, 2), lambda: write_text_atomic(tmp_path / "metrics.json", "{}")):
            with pytest.raises(OmnifieldError, match=f"^{tmp_path}: cannot write .*: permission denied"):
                write()
    finally:
        tmp_path.chmod(0o755)
    _assert_intact(path, 1)


def test_flipped_bits_and_damaged_headers_are_clear_errors(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    _save_step(path, 1)
    good = path.read_bytes()
    header_end = 8 + int.from_bytes(good[:8], "little")

    def damaged(at: int, value: int | None = None) -> bytes:
        data = bytearray(good)
        data[at] = data[at] ^ 0x01 if value is None else value
        return bytes(data)

    # a flipped bit in the tensor data (last byte, first byte), and a changed digit of the step in the metadata
    step_digit = good.index(b'step\\": 1') + len('step\\": ')
    for data in (damaged(len(good) - 1), damaged(header_end), damaged(step_digit, ord("3"))):
        path.write_bytes(data)
        with pytest.raises(OmnifieldError, match=r"checkpoint.safetensors is corrupt: checksum mismatch"):
            load_checkpoint(path)
    # a shape that no longer matches the data, a header that no longer parses, a length past the end of the file
    shape_digit = good.index(b'"shape":[64]') + len('"shape":[6')
    for data in (damaged(shape_digit, ord("5")), damaged(9, ord("#")), damaged(7, 0x40)):
        path.write_bytes(data)
        with pytest.raises(OmnifieldError, match=r"checkpoint.safetensors is corrupt or truncated \("):
            load_checkpoint(path)
    path.write_bytes(good)
    assert load_checkpoint(path)[1]["step"] == 1


def test_checkpoints_without_a_checksum_still_load(tmp_path):
    import json

    from safetensors.torch import save_file

    path = tmp_path / "old.safetensors"  # as written before checksums
    save_file({"a": torch.arange(4.0)}, str(path), metadata={"omnifield": json.dumps({"format_version": 1, "step": 7})})
    tensors, meta = load_checkpoint(path)
    assert meta["step"] == 7 and torch.equal(tensors["a"], torch.arange(4.0))


def test_killed_safetensors_writes_of_earlier_versions_are_removed_and_nothing_else(tmp_path):
    from omnifield.io.checkpoint import remove_stale_temporaries

    path = tmp_path / "checkpoint.safetensors"
    _save_step(path, 1)
    partial = path.read_bytes()[:200]  # what safetensors' own writer had written when the process was killed
    (tmp_path / ".tmpAb3xZ9").write_bytes(partial)
    (tmp_path / ".checkpoint.safetensors.k2j4h6.tmp.safetensors").write_bytes(partial)
    (tmp_path / ".tmpQ1w2E3").write_bytes(b"a user's file that happens to have such a name")
    (tmp_path / ".tmpnotes").write_bytes(partial)
    (tmp_path / "keep.txt").write_text("x")
    assert remove_stale_temporaries(path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmpQ1w2E3", ".tmpnotes", "checkpoint.safetensors",
                                                         "keep.txt"]

