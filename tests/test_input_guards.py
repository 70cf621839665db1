"""The guards every command runs before work: memory estimates, output-folder claims, image layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from omnifield.config_overrides import apply_override
from omnifield.data.images import layout_mismatch
from omnifield.errors import OmnifieldError
from omnifield.fields.footprint import check_field_fits, hash_table_parameters
from omnifield.fields.hashgrid import HashGrid, HashGridConfig
from omnifield.fields.registry import build_field, field_config
from omnifield.io.checkpoint import save_checkpoint
from omnifield.io.run_folder import claim_output, describe_output
from omnifield.resources import format_bytes, require_memory


@pytest.mark.parametrize("cfg", [
    HashGridConfig(n_levels=1, base_resolution=16, max_resolution=16, log2_hashmap_size=19),  # one dense level
    HashGridConfig(n_levels=3, base_resolution=4, max_resolution=64, log2_hashmap_size=10),  # dense, then hashed
])
def test_hash_table_estimate_counts_the_parameters_the_grid_allocates(cfg):
    grid = HashGrid(3, cfg)
    assert hash_table_parameters(cfg) == sum(p.numel() for p in grid.parameters())
    if cfg.n_levels == 1:
        assert hash_table_parameters(cfg) == 17**3 * 2  # (R + 1)^3 vertices, 2 features each


def test_field_estimate_matches_the_built_field_and_refuses_a_huge_table():
    cfg = apply_override(apply_override(field_config("hashgrid"), "encoding.log2_hashmap_size=12", "field"),
                         "encoding.max_resolution=64", "field")
    field = build_field(cfg)
    assert hash_table_parameters(cfg) == field.encoding.table.numel()
    check_field_fits(cfg, "field")  # a few MB: fits anywhere
    huge = apply_override(field_config("hashgrid"), "encoding.log2_hashmap_size=30", "field")
    with pytest.raises(OmnifieldError, match=r"--method hashgrid: training its hash tables \(7953 M parameters"):
        check_field_fits(huge, "--method hashgrid")


def test_require_memory_compares_with_what_is_available():
    require_memory(10, "x", available=11)
    with pytest.raises(OmnifieldError, match=r"^grid needs about 2.0 GiB, more than the 1.0 GiB of memory available$"):
        require_memory(2 * 2**30, "grid", available=2**30)
    assert format_bytes(3 * 2**50) == "3.0 PiB"


def _checkpoint(folder: Path, meta: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "checkpoint.safetensors", {"w": torch.zeros(1)}, meta)
    return folder


def test_output_claims_refuse_another_kind_and_name_both(tmp_path):
    nerf = _checkpoint(tmp_path / "nerf", {"config": {"method": "hashgrid", "field": {}, "renderer": {}, "train": {}}})
    splat = _checkpoint(tmp_path / "splat", {"method": "splat", "config": {"method": "splat"}})
    fit = _checkpoint(tmp_path / "fit", {"config": {"field": {}, "fit": {"type": "fit_sdf"}}})
    (tmp_path / "pde").mkdir()
    np.savez(tmp_path / "pde" / "solution.npz", u=np.zeros(2))
    assert [describe_output(p) for p in (nerf, splat, fit, tmp_path / "pde", tmp_path / "empty")] == [
        "hashgrid NeRF run", "splat run", "sdf fit", "PDE solution", None]
    claim_output(tmp_path / "empty", "splat run")
    claim_output(nerf, "hashgrid NeRF run", continues=True)
    claim_output(tmp_path / "pde", "PDE solution", continues=True)
    with pytest.raises(OmnifieldError, match=r"nerf holds a hashgrid NeRF run; refusing to write a splat run there "
                                             r"\(use another --out\)$"):
        claim_output(nerf, "splat run")
    with pytest.raises(OmnifieldError, match=r"refusing to write an mlp NeRF run there"):
        claim_output(nerf, "mlp NeRF run", continues=True)
    with pytest.raises(OmnifieldError, match=r"splat: already holds a run \(splat run\); choose another --out$"):
        claim_output(splat, "splat run")
    with pytest.raises(OmnifieldError, match=r"fit holds an sdf fit; refusing to write an image fit there"):
        claim_output(fit, "image fit", continues=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OmnifieldError, match=r"--out must be a folder"):
        claim_output(tmp_path / "file", "splat run")
    (nerf / "checkpoint.safetensors").write_bytes(b"\0" * 4)
    with pytest.raises(OmnifieldError, match=r"holds a run with an unreadable checkpoint"):
        claim_output(nerf, "hashgrid NeRF run", continues=True)


def test_layout_mismatch_says_what_differs():
    assert layout_mismatch(Path("a.png"), (4, 4, 4), (4, 4, 4)) is None
    assert layout_mismatch(Path("a.png"), (4, 6, 3), (4, 4, 3)) == (
        "a.png: image size 6x4 differs from the first frame's 4x4")
    assert layout_mismatch(Path("a.jpg"), (4, 4, 3), (4, 4, 4)) == (
        "a.jpg: has 3 channels (RGB), the first frame has 4 (RGBA); convert all frames to one layout")
    assert layout_mismatch(Path("a.jpg"), (4, 4, 3), (4, 4, 4), compare_channels=False) is None
