"""Run inside MACE's own virtual environment (mace-torch pins e3nn 0.4.4): evaluate a trained
MACE model on an extended XYZ file and time its inference.

    python _mace_helper.py MODEL.model TEST.xyz OUT.json [--batch 16] [--dtype float64]

Writes ``{"energy": [...], "forces": [[...]...], "molecules_per_s": x}`` (eV, eV/Å): the
predictions, and molecules per second of energy + forces over the whole file (median of
three passes after a warm-up), one thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from ase.io import read
from mace import data as mace_data
from mace.tools import torch_geometric, utils


def _loader(model, atoms_list, batch: int):
    z_table = utils.AtomicNumberTable([int(z) for z in model.atomic_numbers])
    configs = [mace_data.config_from_atoms(a) for a in atoms_list]
    data = [
        mace_data.AtomicData.from_config(c, z_table=z_table, cutoff=float(model.r_max))
        for c in configs
    ]
    return torch_geometric.dataloader.DataLoader(data, batch_size=batch, shuffle=False)


def _predict(model, loader):
    energies, forces = [], []
    for batch in loader:
        out = model(batch.to_dict(), compute_force=True, training=False)
        energies.append(out["energy"].detach())
        forces.append(out["forces"].detach())
    return torch.cat(energies), torch.cat(forces)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("test")
    parser.add_argument("out")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dtype", default="float64")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(getattr(torch, args.dtype))
    model = torch.load(args.model, map_location="cpu", weights_only=False)
    model = model.to(getattr(torch, args.dtype)).eval()
    atoms = read(args.test, ":")
    loader = _loader(model, atoms, args.batch)
    energy, forces = _predict(model, loader)  # warm-up and the predictions
    times = []
    for _ in range(3):
        start = time.perf_counter()
        _predict(model, loader)
        times.append(time.perf_counter() - start)
    result = {
        "energy": energy.tolist(),
        "forces": forces.tolist(),
        "molecules_per_s": len(atoms) / statistics.median(times),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    with open(args.out, "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main()
