"""Neighbour lists: geobasis' ``radius_graph`` vs brute force and SciPy's k-d tree.

Random points at molecular density (0.1 points per Å^3), cutoff 5 Å, N from 100 to
100,000.  geobasis is timed as called (``backend="auto"``: SciPy's cKDTree half list for open
graphs of 256 points or more, put in PyG's order by geobasis) and with its pure-torch cell
list (``backend="torch"``).
Brute force is torch.cdist in row blocks (up to 20,000 points); SciPy's
``cKDTree.query_pairs`` is a compiled reference.  Every method's edge count is checked
against geobasis'.  Writes results/radius_graph.{json,md}.

    python benchmarks/radius_graph.py [--threads 1]
"""

from __future__ import annotations

import argparse

import torch
from _common import median_time, write_results
from scipy.spatial import cKDTree
from tqdm import tqdm

from geobasis.graph import radius_graph


def brute_force(pos: torch.Tensor, r: float, block: int = 2048) -> torch.Tensor:
    edges = []
    for lo in range(0, pos.shape[0], block):
        d = torch.cdist(pos[lo : lo + block], pos, compute_mode="donot_use_mm_for_euclid_dist")
        i, j = (d < r).nonzero(as_tuple=True)
        i = i + lo
        keep = i != j
        edges.append(torch.stack([j[keep], i[keep]]))
    return torch.cat(edges, 1)


def _kdtree_edge_index(pos: torch.Tensor, r: float) -> torch.Tensor:
    """cKDTree's pairs in PyG's layout (both directions, sorted by target then source):
    what radius_graph returns, for a like-for-like time."""
    pairs = torch.from_numpy(cKDTree(pos.numpy()).query_pairs(r, output_type="ndarray"))
    n = pos.shape[0]
    a, b = pairs[:, 0], pairs[:, 1]
    key = torch.sort(torch.cat([a * n + b, b * n + a])).values
    return torch.stack([key % n, key // n])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100, 1000, 10_000, 20_000, 100_000]
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    r = 5.0
    rows = []
    for n in tqdm(args.sizes, desc="radius_graph"):
        gen = torch.Generator().manual_seed(n)
        pos = torch.rand(n, 3, generator=gen) * (n / 0.1) ** (1 / 3)
        repeats = 5 if n <= 20_000 else 3
        edges = radius_graph(pos, r)
        row = {
            "N": n,
            "edges": edges.shape[1],
            "geobasis s": median_time(lambda: radius_graph(pos, r), repeats, 1),
            "torch cell list s": median_time(
                lambda: radius_graph(pos, r, backend="torch"), repeats, 1
            ),
        }
        assert torch.equal(radius_graph(pos, r, backend="torch"), edges)
        tree_pairs = 2 * len(cKDTree(pos.numpy()).query_pairs(r))
        row["cKDTree s"] = median_time(
            lambda: cKDTree(pos.numpy()).query_pairs(r, output_type="ndarray"), repeats, 1
        )
        row["cKDTree / geobasis"] = row["cKDTree s"] / row["geobasis s"]
        row["cKDTree + layout s"] = median_time(lambda: _kdtree_edge_index(pos, r), repeats, 1)
        assert torch.equal(_kdtree_edge_index(pos, r), edges)
        row["cKDTree + layout / geobasis"] = row["cKDTree + layout s"] / row["geobasis s"]
        assert tree_pairs == edges.shape[1], (tree_pairs, edges.shape[1])
        if n <= 20_000:
            brute = brute_force(pos, r)  # the check; the timing follows
            assert brute.shape[1] == edges.shape[1]
            row["brute force s"] = median_time(lambda: brute_force(pos, r), repeats, 1)
            row["brute / geobasis"] = row["brute force s"] / row["geobasis s"]
        rows.append(row)
    columns = [
        "N",
        "edges",
        "geobasis s",
        "torch cell list s",
        "brute force s",
        "brute / geobasis",
        "cKDTree s",
        "cKDTree / geobasis",
        "cKDTree + layout s",
        "cKDTree + layout / geobasis",
    ]
    notes = (
        f"Uniform random points at 0.1 per Å^3, r = {r} Å, float32, {args.threads} thread(s), median of repeats after one "
        "warm-up (brute force up to 20,000 points). Ratios > 1 mean geobasis is faster. "
        "geobasis = backend 'auto' (cKDTree's half list from 256 points, mirrored and sorted "
        "by geobasis), returning PyG's full, sorted edge_index; cKDTree returns unordered "
        "half pairs (no sorting, no PyG layout); 'cKDTree + layout' adds both directions and "
        "the sort, the same output as geobasis (checked equal)."
    )
    print(
        write_results(
            "radius_graph", rows, columns, "radius_graph vs brute force and SciPy", notes
        ).read_text()
    )


if __name__ == "__main__":
    main()
