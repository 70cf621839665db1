"""Data-parallel training under torchrun: two CPU processes (gloo) match one process."""

import socket
import subprocess
import sys

import torch

from omnifield.apps.recon.run import Run
from omnifield.data.blender import load_blender
from omnifield.distributed import ProcessGroup, shard
from omnifield.fields.registry import build_field
from tests._processes import child_env
from tests.test_recon_cli import TINY, tiny_scene  # noqa: F401 - fixture re-used


def test_shards_cover_the_batch_once():
    for n in (0, 1, 7, 256, 1001):
        for world in (1, 2, 3, 8):
            parts = [shard(n, ProcessGroup(rank, world)) for rank in range(world)]
            covered = torch.cat([torch.arange(n)[p] for p in parts])
            assert torch.equal(covered, torch.arange(n))
            sizes = [p.stop - p.start for p in parts]
            assert max(sizes) - min(sizes) <= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(args: list[str], n_procs: int, tmp_path) -> subprocess.CompletedProcess:
    if n_procs == 1:
        cmd = [sys.executable, "-m", "omnifield", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n_procs),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "omnifield", *args]
    return subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_two_gloo_processes_match_one_process(tiny_scene, tmp_path):  # noqa: F811 - pytest fixture
    common = ["train", str(tiny_scene), "--steps", "20", "--no-eval", *TINY[:-4], "--device", "cpu",
              "--batch-rays", "512", "--target-samples", "16384"]  # ray count adapts: ranks must agree on it
    single = _train([*common, "--out", str(tmp_path / "one")], 1, tmp_path)
    assert single.returncode == 0, single.stderr[-2000:]
    double = _train([*common, "--out", str(tmp_path / "two")], 2, tmp_path)
    assert double.returncode == 0, double.stderr[-2000:]
    assert double.stdout.count("training hashgrid") == 1  # rank 0 alone speaks
    assert "2 processes" in double.stdout

    run1, _, meta1 = Run.open(tmp_path / "one")
    run2, _, meta2 = Run.open(tmp_path / "two")
    assert meta1["step"] == meta2["step"] == 20
    assert meta1["n_rays"] == meta2["n_rays"]  # the same adapted global batch
    with torch.no_grad():
        for (name, p1), (_, p2) in zip(run1.field.named_parameters(), run2.field.named_parameters()):
            # same global batch, gradients averaged over the two shards: equal up to summation order (Adam
            # with eps 1e-15 turns rounding-level differences of near-zero gradients into a few full steps)
            diff = (p1 - p2).abs()
            assert float(diff.mean()) < 1e-3 * float(p1.abs().mean()) + 1e-7, name
            assert float(diff.max()) < 0.05 * float(p1.abs().max()) + 1e-6, name
        test = load_blender(tiny_scene, "test", 8)
        image1 = run1.renderer.render_image(run1.field, test.cameras, 0)["rgb"]
        image2 = run2.renderer.render_image(run2.field, test.cameras, 0)["rgb"]
    assert float((image1 - image2).abs().max()) < 1e-2
    assert torch.equal(run1.renderer.grid.occupancy, run2.renderer.grid.occupancy)
    assert not (tmp_path / "two" / "metrics.json").exists()  # --no-eval on every rank
    torch.manual_seed(0)  # the CLI's seed: the field as initialised, to show training moved it
    initial = build_field(run1.field_config)
    moved = max(float((p - q).detach().abs().max()) for p, q in zip(run1.field.parameters(), initial.parameters()))
    assert moved > 1e-2
