"""Training-step throughput of geobasis' Potential vs e3nn, SchNet and DimeNet++ on rMD17 aspirin.

One training step = forward (energy), forces by autograd with ``create_graph=True``,
an energy + force loss, and the backward pass to the parameters.  Molecules per second,
median over round-robin repeats after a warm-up, batches of rMD17 aspirin (21 atoms,
cutoff 5 Å), float32, one thread.

* geobasis ``Potential``: C channels per degree ``0..L`` (natural parity), 3 layers, 8
  Bessel functions, radial MLP width 32, CG and Gaunt-grid products.
* e3nn ``gate_points_2101.Network`` of the same size: hidden irreps ``Cx0e + Cx1o + Cx2e``
  (``L = 2``), edge harmonics up to ``L``, 3 layers, 8 radial functions, radial MLP width
  32, one-hot species as node attributes.
* the CG ``Potential`` again with forces from ``torch.func.grad`` in one
  ``torch.compile`` graph (``geobasis train --compile``; compile time reported apart).
* PyG ``SchNet`` (hidden 64, 3 interactions) and ``DimeNetPlusPlus`` (hidden 64, 3
  blocks), fed with geobasis' radius graph and triplets (PyG's need torch-cluster and
  torch-sparse, which have no wheels here).

Writes results/potential.{json,md}.

    python benchmarks/potential.py [--channels 32] [--lmax 2] [--batch 8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import interleaved_median_times, write_results
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from geobasis.data.molecules import read_rmd17
from geobasis.graph import radius_graph
from geobasis.nn import Potential

ASPIRIN = Path(__file__).resolve().parents[2] / "shared/data/rmd17/rmd17_aspirin_train_01.npz"
SPECIES = {1: 0, 6: 1, 7: 2, 8: 3}


def e3nn_network(channels: int, lmax: int, layers: int, cutoff: float, neighbours: float):
    from e3nn import o3
    from e3nn.nn.models.gate_points_2101 import Network

    hidden = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])
    return Network(
        irreps_in=None,
        irreps_hidden=hidden,
        irreps_out="0e",
        irreps_node_attr="4x0e",
        irreps_edge_attr=o3.Irreps.spherical_harmonics(lmax),
        layers=layers,
        max_radius=cutoff,
        number_of_basis=8,
        radial_layers=1,
        radial_neurons=32,
        num_neighbors=neighbours,
        num_nodes=21,
        reduce_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--lmax", type=int, default=2)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--no-compile", action="store_true", help="skip the torch.compile row (~2 min compile)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not ASPIRIN.exists():
        raise SystemExit(f"{ASPIRIN} is absent: this benchmark needs ../shared/data/rmd17")
    cutoff = 5.0
    structures = read_rmd17(ASPIRIN)[: args.batch]
    batch = Batch.from_data_list(structures)
    pos = batch.pos.float()
    energy, forces = batch.energy.float(), batch.forces.float()
    edge_index = radius_graph(pos, cutoff, batch.batch)
    neighbours = edge_index.shape[1] / pos.shape[0]
    onehot = torch.nn.functional.one_hot(
        torch.tensor([SPECIES[int(z)] for z in batch.z]), 4
    ).float()

    def step_with(energy_fn, params):
        def step():
            p = pos.clone().requires_grad_()
            e = energy_fn(p)
            (f,) = torch.autograd.grad(-e.sum(), p, create_graph=True)
            loss = (e - energy).square().mean() + (f - forces).square().mean()
            grads = torch.autograd.grad(loss, params)
            return grads

        return step

    def potential(product: str) -> Potential:
        torch.manual_seed(0)
        return Potential(
            channels=args.channels,
            lmax=args.lmax,
            num_layers=args.layers,
            cutoff=cutoff,
            radial_hidden=32,
            product=product,
            avg_num_neighbors=neighbours,
        ).train()

    steps, sizes = {}, {}
    for product in ("cg", "gaunt_grid"):
        model = potential(product)

        def energy_fn(p, model=model):
            data = batch.clone()
            data.pos, data.edge_index = p, edge_index
            return model(data, compute_forces=False)["energy"]

        name = f"geobasis {product}"
        steps[name] = step_with(energy_fn, list(model.parameters()))
        sizes[name] = sum(p.numel() for p in model.parameters())

    compile_seconds = None
    if not args.no_compile:
        # the same CG model, forces by torch.func.grad inside one compiled graph
        model = potential("cg")
        compiled = torch.compile(model.atomic_energies_and_forces, dynamic=True)
        params = list(model.parameters())
        z, graph_of = batch.z, batch.batch

        def compiled_step():
            atomic, f = compiled(pos, z, graph_of, edge_index)
            e = scatter(atomic, graph_of, 0, dim_size=batch.num_graphs)
            loss = (e - energy).square().mean() + (f - forces).square().mean()
            return torch.autograd.grad(loss, params)

        started = time.perf_counter()
        compiled_step()
        compile_seconds = time.perf_counter() - started
        steps["geobasis cg, torch.compile"] = compiled_step
        sizes["geobasis cg, torch.compile"] = sum(p.numel() for p in params)

    torch.manual_seed(0)
    e3 = e3nn_network(args.channels, args.lmax, args.layers, cutoff, neighbours)

    def e3nn_energy(p):
        return e3({"pos": p, "z": onehot, "batch": batch.batch})[:, 0]

    steps["e3nn gate_points_2101"] = step_with(e3nn_energy, list(e3.parameters()))
    sizes["e3nn gate_points_2101"] = sum(p.numel() for p in e3.parameters())

    from torch_geometric.nn.models import SchNet

    def graph(p, b):
        ei = radius_graph(p.detach(), cutoff, b)
        return ei, (p[ei[0]] - p[ei[1]]).norm(dim=-1)

    schnet = SchNet(hidden_channels=64, num_interactions=3, cutoff=cutoff, interaction_graph=graph)
    steps["PyG SchNet"] = step_with(
        lambda p: schnet(batch.z, p, batch.batch)[:, 0], list(schnet.parameters())
    )
    sizes["PyG SchNet"] = sum(p.numel() for p in schnet.parameters())
    # DimeNet++ builds its graph with torch-cluster and its triplets with torch-sparse:
    # hand it geobasis' radius graph and triplets instead (same definitions)
    from torch_geometric.nn.models import DimeNetPlusPlus
    from torch_geometric.nn.models import dimenet as dimenet_module

    from geobasis.graph import triplets

    def pyg_triplets(edge_index, num_nodes):
        idx_kj, idx_ji, (i, j, k) = triplets(edge_index, num_nodes)
        return edge_index[1], edge_index[0], i, j, k, idx_kj, idx_ji

    dimenet_module.radius_graph = lambda p, r, batch=None, max_num_neighbors=32: radius_graph(
        p.detach(), r, batch
    )
    dimenet_module.triplets = pyg_triplets
    dimenet = DimeNetPlusPlus(
        hidden_channels=64,
        out_channels=1,
        num_blocks=3,
        int_emb_size=64,
        basis_emb_size=8,
        out_emb_channels=128,
        num_spherical=7,
        num_radial=6,
        cutoff=cutoff,
    )
    steps["PyG DimeNet++"] = step_with(
        lambda p: dimenet(batch.z, p, batch.batch)[:, 0], list(dimenet.parameters())
    )
    sizes["PyG DimeNet++"] = sum(p.numel() for p in dimenet.parameters())

    times = interleaved_median_times(steps, repeats=args.repeats, warmup=2, budget=600)
    reference = times["e3nn gate_points_2101"]
    rows = []
    for name, seconds in times.items():
        rows.append(
            {
                "model": name,
                "parameters": sizes[name],
                "step ms": 1e3 * seconds,
                "molecules/s": args.batch / seconds,
                "e3nn time / time": reference / seconds,
            }
        )
        print(rows[-1])
    notes = (
        f"rMD17 aspirin, batch {args.batch} x 21 atoms, {edge_index.shape[1]} edges, "
        f"C={args.channels}, L={args.lmax}, {args.layers} layers, float32, "
        f"{args.threads} thread(s); step = energy + forces (create_graph) + backward."
    )
    if compile_seconds is not None:
        notes += (
            f" The compiled row computes forces with torch.func.grad inside one "
            f"torch.compile(dynamic=True) graph (`geobasis train --compile`); its one-off "
            f"compilation took {compile_seconds:.0f} s and is not in the step time."
        )
    write_results(
        "potential",
        rows,
        ["model", "parameters", "step ms", "molecules/s", "e3nn time / time"],
        "Training-step throughput",
        notes,
    )


if __name__ == "__main__":
    main()
