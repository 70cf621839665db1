"""Shared test fixtures."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run (a test run is repeatable); HYPOTHESIS_PROFILE=explore
# draws fresh ones, to hunt for new failures.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

REPO = Path(__file__).resolve().parents[1]
LEGO = REPO / "data" / "lego_200"


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture
def one_thread():
    """Tiny problems run fastest (and steadiest on a shared machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def lego_dir() -> Path:
    return LEGO


def lego_subset(root: Path, views: dict[str, int]) -> Path:
    """A scene folder at ``root`` with the first ``views[split]`` lego views of each split (images and transforms)."""
    for split, n in views.items():
        meta = json.loads((LEGO / f"transforms_{split}.json").read_text())
        meta["frames"] = meta["frames"][:n]
        (root / split).mkdir(parents=True)
        for f in meta["frames"]:
            shutil.copy(LEGO / (f["file_path"] + ".png"), root / (f["file_path"] + ".png"))
        (root / f"transforms_{split}.json").write_text(json.dumps(meta))
    return root
