"""Hash encoding, dense-grid lookups and ray marching on the CPU: torch twin vs native kernel.

Hash encoding rows: config x implementation x point pattern -> forward, forward+backward (grad wrt the
table, the NeRF case) and forward+backward with grad wrt x too, in million points per second (wall
clock), points per CPU-second (all threads; on a shared machine, x threads estimates idle cores), and
the speed-up over the twin. "uniform" points are i.i.d. in the unit cube (the cache's
worst case); "rays" are 256 consecutive samples along each of many random rays (what a NeRF batch
looks like). The twin runs on fewer points (it needs ~3 KB of temporaries per point).

Grid-lookup rows (tri-planes, CAM and NeuRBF grids): million points per second through three
128^2 planes of 16 features (a tri-plane level), forward and forward+backward (grads wrt the planes
and the coordinates).

Ray-marching rows: rays per second for 8192 rays through a 128^3 occupancy grid with ~10% occupied
cells and dt = 3 sqrt(3) / 1024.

    python benchmarks/hashgrid.py [--quick] [--threads 2] [--out rows.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time

import torch

from omnifield.fields import _hashgrid_native
from omnifield.fields.grid_lookup import _grid_lookup, grid_lookup
from omnifield.fields.hashgrid import HashGrid, HashGridConfig, _hash_encode
from omnifield.renderers import _raymarch_native
from omnifield.renderers.raymarch import _march_rays
from omnifield.renderers.rays import ray_aabb_intersect

CONFIGS = {
    "L16xF2 T=2^19 (default)": HashGridConfig(),
    "L16xF2 T=2^17": HashGridConfig(log2_hashmap_size=17),
}


def best_time(fn, repeats: int) -> tuple[float, float]:
    """Fastest wall time and fastest process CPU time of ``repeats`` calls (after one warm-up call).

    CPU time (all threads) is what the work costs when the cores are shared with other processes:
    ``n / cpu_seconds * threads`` estimates the throughput on idle cores.
    """
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def make_points(n: int, pattern: str, gen: torch.Generator) -> torch.Tensor:
    """``[n, 3]`` points in the unit cube: i.i.d. uniform, or 256 samples along each random ray."""
    if pattern == "uniform":
        return torch.rand(n, 3, generator=gen)
    n_rays = max(n // 256, 1)
    origins = torch.rand(n_rays, 1, 3, generator=gen)
    directions = torch.nn.functional.normalize(torch.randn(n_rays, 1, 3, generator=gen), dim=-1)
    t = torch.linspace(0.0, 0.6, 256)[None, :, None]
    return (origins + directions * t).clamp(0.0, 1.0).reshape(-1, 3)[:n].contiguous()


def encode_fn(impl: str, grid: HashGrid):
    layout = (grid.resolutions, grid.offsets, grid.sizes, grid.dense)
    if impl == "twin":
        return lambda x: _hash_encode(x, grid.table, *layout)
    return lambda x: _hashgrid_native.try_hash_encode(x, grid.table, *layout)


def bench_encoding(name: str, cfg: HashGridConfig, impl: str, pattern: str, n: int, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    grid = HashGrid(3, cfg)
    encode = encode_fn(impl, grid)
    x = make_points(n, pattern, gen)
    x_grad = x.clone().requires_grad_(True)
    upstream = torch.randn(n, grid.n_output_dims, generator=gen)

    def forward():
        with torch.no_grad():
            encode(x)

    def forward_backward():
        torch.autograd.grad(encode(x), [grid.table], upstream)

    def forward_backward_x():
        torch.autograd.grad(encode(x_grad), [grid.table, x_grad], upstream)

    fwd, fwd_bwd, fwd_bwd_x = (best_time(fn, repeats) for fn in (forward, forward_backward, forward_backward_x))
    return {
        "benchmark": "hash_encoding",
        "config": name,
        "impl": impl,
        "points": pattern,
        "n": n,
        "fwd_Mpts_s": n / fwd[0] / 1e6,
        "fwd_bwd_Mpts_s": n / fwd_bwd[0] / 1e6,
        "fwd_bwd_with_x_Mpts_s": n / fwd_bwd_x[0] / 1e6,
        "fwd_bwd_Mpts_per_cpu_s": n / fwd_bwd[1] / 1e6,
    }


def bench_grid_lookup(impl: str, n: int, repeats: int) -> dict:
    """Three 128^2 planes of 16 features read at ``n`` random points: forward and forward+backward."""
    gen = torch.Generator().manual_seed(0)
    planes = torch.randn(3, 128, 128, 16, generator=gen).requires_grad_()
    coords = torch.rand(n, 3, 2, generator=gen).requires_grad_()
    upstream = torch.randn(n, 3, 16, generator=gen)
    lookup = _grid_lookup if impl == "twin" else grid_lookup
    fwd = best_time(lambda: lookup(planes, coords), repeats)
    fwd_bwd = best_time(lambda: torch.autograd.grad(lookup(planes, coords), (planes, coords), upstream), repeats)
    return {
        "benchmark": "grid_lookup",
        "config": "3 planes 128^2 x 16",
        "impl": impl,
        "n": n,
        "fwd_Mpts_s": n / fwd[0] / 1e6,
        "fwd_bwd_Mpts_s": n / fwd_bwd[0] / 1e6,
        "fwd_bwd_Mpts_per_cpu_s": n / fwd_bwd[1] / 1e6,
    }


def bench_raymarch(impl: str, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    res, n_rays = 128, 8192
    aabb = torch.tensor([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5])
    occupancy = torch.rand(res, res, res, generator=gen) < 0.1
    origins = torch.nn.functional.normalize(torch.randn(n_rays, 3, generator=gen), dim=-1) * 4.0
    targets = (torch.rand(n_rays, 3, generator=gen) - 0.5) * 2.0
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    near, far = ray_aabb_intersect(origins, directions, aabb)
    step = 3 * math.sqrt(3) / 1024
    args = (origins, directions, near, far, occupancy, aabb, step)
    march = _march_rays if impl == "twin" else _raymarch_native.try_march_rays
    seconds, cpu_seconds = best_time(lambda: march(*args), repeats)
    return {
        "benchmark": "ray_marching",
        "config": f"{n_rays} rays, G={res}, 10% occupied, dt=3*sqrt(3)/1024",
        "impl": impl,
        "samples": int(march(*args)[0].numel()),
        "rays_per_s": n_rays / seconds,
        "rays_per_cpu_s": n_rays / cpu_seconds,
        "ms": seconds * 1e3,
    }


def add_speedups(rows: list[dict], keys: tuple[str, ...], match: tuple[str, ...]) -> None:
    """``speedup_<key>``: each row's throughput over the twin row with the same ``match`` fields."""
    for row in rows:
        twin = next((r for r in rows if r["impl"] == "twin" and all(r[m] == row[m] for m in match)), None)
        for key in keys:
            if twin is not None:
                row[f"speedup_{key}"] = row[key] / twin[key]


def print_table(rows: list[dict], columns: list[str]) -> None:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    cells = [[fmt(r.get(c, "-")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print(" | ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths)))
    print()


def write_json(rows: list[dict], path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(rows, f, indent=2)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer points and repeats (< 2 min)")
    parser.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads (default 2)")
    parser.add_argument("--out", help="write the rows as a JSON list to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_native, n_twin, repeats = (2**16, 2**12, 2) if args.quick else (2**18, 2**14, 3)
    print(f"threads={args.threads}  load average at start: {os.getloadavg()[0]:.2f}\n")

    enc_rows = []
    for name, cfg in CONFIGS.items():
        enc_rows.append(bench_encoding(name, cfg, "twin", "uniform", n_twin, repeats))
        for pattern in ("uniform", "rays"):
            enc_rows.append(bench_encoding(name, cfg, "native", pattern, n_native, repeats))
    add_speedups(enc_rows, ("fwd_Mpts_s", "fwd_bwd_Mpts_s"), ("config",))
    print_table(enc_rows, ["config", "impl", "points", "n", "fwd_Mpts_s", "fwd_bwd_Mpts_s", "fwd_bwd_with_x_Mpts_s",
                           "fwd_bwd_Mpts_per_cpu_s", "speedup_fwd_Mpts_s", "speedup_fwd_bwd_Mpts_s"])

    lookup_rows = [bench_grid_lookup("twin", n_twin * 4, repeats), bench_grid_lookup("native", n_native, repeats)]
    add_speedups(lookup_rows, ("fwd_Mpts_s", "fwd_bwd_Mpts_s"), ("config",))
    print_table(lookup_rows, ["config", "impl", "n", "fwd_Mpts_s", "fwd_bwd_Mpts_s", "fwd_bwd_Mpts_per_cpu_s",
                              "speedup_fwd_Mpts_s", "speedup_fwd_bwd_Mpts_s"])

    march_rows = [bench_raymarch(impl, repeats) for impl in ("twin", "native")]
    add_speedups(march_rows, ("rays_per_s",), ("config",))
    print_table(march_rows, ["config", "impl", "samples", "ms", "rays_per_s", "rays_per_cpu_s", "speedup_rays_per_s"])

    if args.out:
        write_json(enc_rows + lookup_rows + march_rows, args.out)


if __name__ == "__main__":
    main()
