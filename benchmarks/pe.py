"""Positional encodings: eigenpair and encoding throughput against PyG's transforms.

QM9 molecular graphs (bonds from covalent radii; ``qm9pack`` needed, else random
molecule-sized graphs) with more than ``k + 1`` atoms (PyG's Laplacian transform needs
``k < N``).  Compared, in graphs per second:

* Laplacian eigenpairs (``k`` smallest, symmetric normalisation):
  ``geobasis.pe.laplacian_eigenpairs`` on the whole batch (one padded batched ``eigh``)
  and applied graph by graph, vs ``torch_geometric.transforms.AddLaplacianEigenvectorPE``
  graph by graph (the way a PyG transform runs);
* random-walk encodings (``steps`` = 16): ``geobasis.pe.random_walk_pe`` batched vs
  ``AddRandomWalkPE`` graph by graph;
* learned encoders on the stored eigenpairs (forward, batches of 128 graphs): SignNet and
  SPE (no PyG counterpart; reported for scale).

Medians of round-robin repeats after a warm-up; writes results/pe.{json,md}.

    python benchmarks/pe.py [--threads 1] [--graphs 2000]
"""

from __future__ import annotations

import argparse
import importlib.util

import torch
from _common import interleaved_median_times, write_results
from torch_geometric.data import Batch, Data
from torch_geometric.transforms import AddLaplacianEigenvectorPE, AddRandomWalkPE
from torch_geometric.utils import to_undirected

from geobasis.graph import covalent_bonds
from geobasis.pe import SPE, SignNet, laplacian_eigenpairs, random_walk_pe


def qm9_graphs(count: int, min_nodes: int) -> tuple[list[Data], str]:
    if importlib.util.find_spec("qm9pack") is None:
        g = torch.Generator().manual_seed(0)
        graphs = []
        for _ in range(count):
            n = int(torch.randint(min_nodes, 29, (1,), generator=g))
            tree = torch.stack(
                [torch.arange(1, n), (torch.rand(n - 1, generator=g) * torch.arange(1, n)).long()]
            )
            graphs.append(Data(edge_index=to_undirected(tree), num_nodes=n))
        return graphs, "random trees of QM9 size (qm9pack not installed)"
    from geobasis.data.molecules import cache_dir
    from geobasis.data.qm9 import QM9

    dataset = QM9(cache_dir() / "qm9", "gap", max_molecules=3 * count)
    graphs = []
    for data in dataset:
        if data.num_nodes >= min_nodes:
            graphs.append(
                Data(edge_index=covalent_bonds(data.pos, data.z), num_nodes=data.num_nodes)
            )
        if len(graphs) == count:
            break
    return graphs, f"QM9 molecules (first {len(graphs)} with >= {min_nodes} atoms), covalent bonds"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--graphs", type=int, default=2000)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    graphs, source = qm9_graphs(args.graphs, args.k + 2)
    batch = Batch.from_data_list(graphs)
    n = len(graphs)
    pyg_lap = AddLaplacianEigenvectorPE(args.k, is_undirected=True)
    pyg_rw = AddRandomWalkPE(args.steps)

    def ours_lap_batched():
        laplacian_eigenpairs(batch.edge_index, batch.num_nodes, batch.batch, k=args.k)

    def ours_lap_per_graph():
        for g in graphs:
            laplacian_eigenpairs(g.edge_index, g.num_nodes, k=args.k)

    def pyg_lap_per_graph():
        for g in graphs:
            pyg_lap(g.clone())

    def ours_rw_batched():
        random_walk_pe(batch.edge_index, batch.num_nodes, args.steps, batch.batch)

    def pyg_rw_per_graph():
        for g in graphs:
            pyg_rw(g.clone())

    times = interleaved_median_times(
        {
            "ours_lap_batched": ours_lap_batched,
            "ours_lap_per_graph": ours_lap_per_graph,
            "pyg_lap": pyg_lap_per_graph,
            "ours_rw": ours_rw_batched,
            "pyg_rw": pyg_rw_per_graph,
        },
        repeats=args.repeats,
    )
    rows = [
        {
            "operation": f"Laplacian eigenpairs (k={args.k}), batched",
            "geobasis graphs/s": n / times["ours_lap_batched"],
            "PyG graphs/s": n / times["pyg_lap"],
            "speed-up (PyG time / ours)": times["pyg_lap"] / times["ours_lap_batched"],
        },
        {
            "operation": f"Laplacian eigenpairs (k={args.k}), graph by graph",
            "geobasis graphs/s": n / times["ours_lap_per_graph"],
            "PyG graphs/s": n / times["pyg_lap"],
            "speed-up (PyG time / ours)": times["pyg_lap"] / times["ours_lap_per_graph"],
        },
        {
            "operation": f"random-walk PE ({args.steps} steps), batched",
            "geobasis graphs/s": n / times["ours_rw"],
            "PyG graphs/s": n / times["pyg_rw"],
            "speed-up (PyG time / ours)": times["pyg_rw"] / times["ours_rw"],
        },
    ]
    # learned encoders on stored eigenpairs, batches of 128 graphs
    sub = Batch.from_data_list(graphs[:128])
    pairs = laplacian_eigenpairs(
        sub.edge_index, sub.num_nodes, sub.batch, k=args.k, whole_eigenspaces=True
    )
    vectors, values = pairs.vectors.float(), pairs.values.float()
    signnet, spe = (
        SignNet(args.k, 16, hidden=16),
        SPE(16, num_filters=8, phi_hidden=16, rho_hidden=16),
    )
    encoders = {
        "SignNet": lambda: signnet(vectors, values, pairs.mask, sub.edge_index, sub.batch),
        "SPE": lambda: spe(vectors, values, pairs.mask, sub.edge_index, sub.batch),
    }
    with torch.no_grad():
        encoder_times = interleaved_median_times(encoders, repeats=args.repeats * 2)
    for name, t in encoder_times.items():
        rows.append({"operation": f"{name} forward (128 graphs)", "geobasis graphs/s": 128 / t})
    for row in rows:
        print(row)
    write_results(
        "pe",
        rows,
        ["operation", "geobasis graphs/s", "PyG graphs/s", "speed-up (PyG time / ours)"],
        "Positional encodings: throughput vs PyG transforms",
        f"{n} graphs: {source}. Medians of {args.repeats} round-robin repeats after a warm-up.",
    )


if __name__ == "__main__":
    main()
