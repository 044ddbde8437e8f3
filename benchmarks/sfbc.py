"""SFBCConv vs PyG's PointNetConv: forward+backward throughput on 1-D, 2-D and 3-D particles.

Uniform random particles in a unit box, support radius chosen for about 16
(1-D), 24 (2-D) and 32 (3-D) neighbours, 16 input and 16 output channels.  SFBC uses the
full Fourier basis with 8 (1-D), 5x5 (2-D) and 4x4x4 (3-D) terms; the baseline is
``torch_geometric.nn.PointNetConv`` whose per-edge MLP ``[16 + d -> 64 -> 16]`` sees
``[x_j, pos_j - pos_i]`` (a continuous convolution of similar width).  The backward pass
includes the gradient with respect to positions.  Sizes from 10k to 1M particles; a size
is skipped when the estimated per-edge memory of either layer exceeds ``--max-gib``.
Medians of round-robin repeats after a warm-up; writes results/sfbc.{json,md}.

    python benchmarks/sfbc.py [--threads 1] [--sizes 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import math

import torch
from _common import interleaved_median_times, write_results
from torch import nn
from torch_geometric.nn import PointNetConv
from tqdm import tqdm

from geobasis.graph import radius_graph
from geobasis.nn import SFBCConv

NEIGHBOURS = {1: 16, 2: 24, 3: 32}
NUM_BASIS = {1: 8, 2: 5, 3: 4}
CHANNELS = 16
HIDDEN = 64


def particles(n: int, dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(n, dim, generator=g)
    # volume of the d-ball of radius r holding `k` particles at density n
    unit_ball = math.pi ** (dim / 2) / math.gamma(dim / 2 + 1)
    radius = (NEIGHBOURS[dim] / (n * unit_ball)) ** (1 / dim)
    return pos, radius, radius_graph(pos, radius, loop=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000, 1_000_000]
    )
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-gib", type=float, default=6.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for dim in args.dims:
        for n in tqdm(args.sizes, desc=f"{dim}-D"):
            edges_estimate = n * (NEIGHBOURS[dim] + 1)
            terms = NUM_BASIS[dim] ** dim
            # PointNetConv keeps [x_j, r_ij], hidden and output per edge for backward; SFBC
            # keeps features, q and messages (its intermediates are recomputed per block)
            per_edge = (2 * (CHANNELS + dim) + 2 * HIDDEN + 3 * CHANNELS) * 4
            if edges_estimate * per_edge > args.max_gib * 2**30:
                rows.append({"dim": dim, "N": n, "note": f"skipped (> {args.max_gib} GiB)"})
                continue
            pos, radius, edge_index = particles(n, dim)
            pos, edge_index = pos.to(device), edge_index.to(device)
            x = torch.randn(n, CHANNELS, device=device)
            sfbc = SFBCConv(CHANNELS, CHANNELS, dim, radius, "fourier", NUM_BASIS[dim]).to(device)
            local = nn.Sequential(
                nn.Linear(CHANNELS + dim, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CHANNELS)
            )
            pointnet = PointNetConv(local_nn=local, add_self_loops=False, aggr="add").to(device)
            num_edges = edge_index.shape[1]

            def step(layer):
                p = pos.detach().requires_grad_()
                xs = x.detach().requires_grad_()
                out = layer(xs, p, edge_index)
                out.square().sum().backward()

            times = interleaved_median_times(
                {"sfbc": lambda: step(sfbc), "pointnet": lambda: step(pointnet)},
                repeats=args.repeats,
            )
            rows.append(
                {
                    "dim": dim,
                    "N": n,
                    "edges": num_edges,
                    "SFBC terms": terms,
                    "SFBC ms": 1e3 * times["sfbc"],
                    "PointNetConv ms": 1e3 * times["pointnet"],
                    "SFBC Medges/s": num_edges / times["sfbc"] / 1e6,
                    "PointNetConv / SFBC": times["pointnet"] / times["sfbc"],
                }
            )
            print(rows[-1])
    columns = [
        "dim",
        "N",
        "edges",
        "SFBC terms",
        "SFBC ms",
        "PointNetConv ms",
        "SFBC Medges/s",
        "PointNetConv / SFBC",
        "note",
    ]
    title = "SFBCConv vs PointNetConv, forward + backward (incl. position gradients)"
    notes = (
        f"{CHANNELS} -> {CHANNELS} channels; PointNetConv MLP [{CHANNELS}+d, {HIDDEN}, "
        f"{CHANNELS}]; device {device}; ratio > 1: SFBC faster."
    )
    write_results("sfbc", rows, columns, title, notes)


if __name__ == "__main__":
    main()
