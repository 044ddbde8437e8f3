"""Frame averaging: the cost of full vs stochastic averaging relative to the wrapped model.

The wrapped model is FAENet's Cartesian message-passing network
(:class:`geobasis.nn.CartesianMPNN`, 64 channels, 3 layers, 5 Å cutoff) on rMD17 aspirin
batches of 8 molecules (random 21-atom molecules if the data are absent).  Timed, for
inference (energy + forces) and a training step (energy + forces with the graph kept,
force loss, backward):

* the network alone on raw coordinates (not invariant);
* stochastic frame averaging (one frame per molecule: FAENet's training mode);
* full O(3) averaging (8 frames) and full SO(3) averaging (4 frames);
* ``pca_frames`` alone;
* the equivariant :class:`geobasis.nn.Potential` (CG, L = 2, 32 channels, 3 layers), for
  scale.

Medians of round-robin repeats after a warm-up; ratios are times relative to the network
alone.  Writes results/frames.{json,md}.

    python benchmarks/frames.py [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from _common import interleaved_median_times, write_results
from torch_geometric.data import Batch, Data

from geobasis.frames import FrameAveraging, pca_frames
from geobasis.graph import radius_graph
from geobasis.nn import CartesianMPNN, Potential

DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "rmd17" / "rmd17_aspirin_train_01.npz"
)


def aspirin_batch(size: int) -> tuple[Batch, str]:
    if DATA.exists():
        arrays = np.load(DATA)
        z = torch.tensor(arrays["nuclear_charges"]).long()
        graphs = [Data(pos=torch.tensor(arrays["coords"][i]).float(), z=z) for i in range(size)]
        source = "rMD17 aspirin"
    else:
        g = torch.Generator().manual_seed(0)
        graphs = [
            Data(
                pos=torch.randn(21, 3, generator=g) * 1.5, z=torch.randint(1, 9, (21,), generator=g)
            )
            for _ in range(size)
        ]
        source = "random 21-atom molecules (rMD17 absent)"
    batch = Batch.from_data_list(graphs)
    batch.edge_index = radius_graph(batch.pos, 5.0, batch.batch)
    return batch, source


class _RawEnergy(torch.nn.Module):
    """The network on raw coordinates, returning graph energies."""

    def __init__(self, network: CartesianMPNN) -> None:
        super().__init__()
        self.network = network

    def forward(self, data):
        atomic = self.network(data)["atomic_energy"]
        return {"energy": torch.zeros(data.num_graphs).index_add(0, data.batch, atomic)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch, source = aspirin_batch(args.batch_size)
    network = CartesianMPNN(64, 3, 5.0, 8)
    raw = _RawEnergy(network)
    outputs = {"energy": "invariant"}
    models = {
        "network alone": raw,
        "stochastic FA (1 frame)": FrameAveraging(raw, "O3", "stochastic", outputs),
        "full FA, SO(3) (4 frames)": FrameAveraging(raw, "SO3", "full", outputs),
        "full FA, O(3) (8 frames)": FrameAveraging(raw, "O3", "full", outputs),
    }
    potential = Potential(channels=32, lmax=2, num_layers=3)

    def energy_and_forces(model, train: bool):
        data = batch.clone()
        data.pos = batch.pos.detach().requires_grad_()
        energy = model(data)["energy"]
        (grad,) = torch.autograd.grad(energy.sum(), data.pos, create_graph=train)
        if train:
            (energy.square().mean() + grad.square().mean()).backward()

    def potential_step(train: bool):
        potential.train(train)
        out = potential(batch)
        if train:
            (out["energy"].square().mean() + out["forces"].square().mean()).backward()

    rows = []
    for train in (False, True):
        fns = {name: (lambda m=m: energy_and_forces(m, train)) for name, m in models.items()}
        fns["equivariant Potential (CG, L=2)"] = lambda: potential_step(train)
        if not train:
            fns["pca_frames alone"] = lambda: pca_frames(batch.pos, batch.batch)
        times = interleaved_median_times(fns, repeats=args.repeats, warmup=2)
        base = times["network alone"]
        for name, t in times.items():
            rows.append(
                {
                    "task": "training step" if train else "energy + forces",
                    "model": name,
                    "ms": 1e3 * t,
                    "relative to the network": t / base,
                }
            )
    for row in rows:
        print(row)
    write_results(
        "frames",
        rows,
        ["task", "model", "ms", "relative to the network"],
        "Frame averaging: cost relative to the wrapped network",
        f"{source}, batches of {args.batch_size}; CartesianMPNN 64 channels x 3 layers. "
        f"Medians of {args.repeats} round-robin repeats after a warm-up.",
    )


if __name__ == "__main__":
    main()
