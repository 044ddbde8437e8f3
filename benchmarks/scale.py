"""Energy, forces and stress of large periodic systems: time and peak memory vs size.

A water-like periodic box (0.1 atoms/Å^3, O:H = 1:2, random positions kept 1 Å apart on
a jittered lattice), cutoff 5 Å (about 52 neighbours per atom), ``Potential`` with C = 16,
L = 2, 2 layers, float32, one inference call (energy + forces + stress, the MD workload).
Each size runs in a fresh process; the peak is that process's maximum resident set size
minus its size after building the model (``resource.getrusage``), so it counts the
neighbour list, the edge geometry, the convolutions and autograd.

Writes results/scale.{json,md}.

    python benchmarks/scale.py [--atoms 6000 12000 25000 50000 100000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

DENSITY = 0.1  # atoms per Å^3, liquid water


def _box(atoms: int, seed: int = 0):
    import torch

    side = (atoms / DENSITY) ** (1 / 3)
    cells = round(atoms ** (1 / 3) + 0.5)
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(cells)] * 3, indexing="ij"), -1).reshape(
        -1, 3
    )[:atoms]
    spacing = side / cells
    pos = (grid + 0.5 + 0.3 * (torch.rand(atoms, 3, generator=g) - 0.5)) * spacing
    z = torch.where(torch.arange(atoms) % 3 == 0, 8, 1)
    return pos.float(), z, torch.eye(3) * side


def _measure(atoms: int, threads: int) -> dict:
    import torch
    from torch_geometric.data import Data

    from geobasis.nn import Potential

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Potential(channels=16, lmax=2, num_layers=2, cutoff=5.0, avg_num_neighbors=52).eval()
    pos, z, cell = _box(atoms)
    data = Data(pos=pos, z=z, cell=cell[None], pbc=torch.ones(1, 3, dtype=torch.bool))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out = model(data)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base  # KiB on Linux
    from geobasis.graph import radius_graph

    edges = radius_graph(pos, 5.0, cell=cell)[0].shape[1]
    assert torch.isfinite(out["forces"]).all() and torch.isfinite(out["stress"]).all()
    return {"atoms": atoms, "edges": edges, "seconds": seconds, "peak_GB": peak / 2**20,
            "bytes_per_edge": peak * 1024 / edges}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--atoms", type=int, nargs="+", default=[6000, 12000, 25000, 50000, 100000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_measure(args.one, args.threads)))
        return
    rows = []
    for atoms in args.atoms:
        child = [sys.executable, __file__, "--one", str(atoms), "--threads", str(args.threads)]
        result = subprocess.run(child, capture_output=True, text=True)
        if result.returncode:
            print(result.stderr[-2000:])
            break
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    from _common import write_results

    write_results(
        "scale",
        rows,
        ["atoms", "edges", "seconds", "peak_GB", "bytes_per_edge"],
        "Energy + forces + stress of a periodic water-like box",
        "Potential C=16, L=2, 2 layers, float32, cutoff 5 Å, one call per fresh process; "
        f"{args.threads} thread(s); peak = max RSS minus RSS after building the model.",
    )


if __name__ == "__main__":
    main()
