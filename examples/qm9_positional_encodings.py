"""Positional encodings on QM9 molecular graphs: GINE with none / LapPE / RWPE / SignNet / SPE.

Molecules come from the offline ``qm9pack`` package; bonds are perceived from covalent
radii (:func:`geobasis.graph.covalent_bonds`), so the model sees the molecular *graph*
(elements, bonds, bond lengths), not 3-D coordinates.  Each encoding gets the same GINE
network, the same split and the same wall-clock budget; the script prints and writes a
table (Markdown + JSON) and a plot of the learning curves.

Reduced run (the default, about 25 minutes on a 2-core CPU)::

    python examples/qm9_positional_encodings.py

Full run (the whole of QM9, 110k/10k/10.8k split, hours per encoding)::

    python examples/qm9_positional_encodings.py --molecules 130831 --train 110000 \\
        --val 10000 --minutes 240 --epochs 300
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from geobasis.data.molecules import cache_dir
from geobasis.data.qm9 import QM9
from geobasis.graph import covalent_bonds
from geobasis.nn import PE_CHOICES, GINERegressor
from geobasis.pe import laplacian_eigenpairs, random_walk_pe

NAMES = {"none": "no PE", "lap": "LapPE", "rw": "RWPE", "signnet": "SignNet", "spe": "SPE"}


def prepare(args) -> list:
    """QM9 molecules with bonds, eigenpairs and random-walk encodings (all batched)."""
    dataset = QM9(args.root, target=args.target, max_molecules=args.molecules)
    molecules = [dataset[i] for i in range(len(dataset))]
    prepared = []
    for start in tqdm(range(0, len(molecules), 2048), desc="graphs + encodings"):
        chunk = Batch.from_data_list(molecules[start : start + 2048])
        edge_index = covalent_bonds(chunk.pos, chunk.z, chunk.batch)
        pairs = laplacian_eigenpairs(
            edge_index, chunk.num_nodes, chunk.batch, k=args.k, whole_eigenspaces=True
        )
        rw = random_walk_pe(edge_index, chunk.num_nodes, args.rw_steps, chunk.batch)
        # back to one Data per molecule: nodes by ptr, edges by the graph of their source
        edge_graph = chunk.batch[edge_index[0]]
        order = torch.argsort(edge_graph, stable=True)
        edge_counts = torch.bincount(edge_graph, minlength=chunk.num_graphs).tolist()
        edges = torch.split(edge_index[:, order], edge_counts, dim=1)
        node_counts = torch.bincount(chunk.batch, minlength=chunk.num_graphs).tolist()
        vectors = torch.split(pairs.vectors.float(), node_counts)
        walks = torch.split(rw, node_counts)
        for i, data in enumerate(molecules[start : start + 2048]):
            first = int(chunk.ptr[i])
            data = data.clone()
            data.edge_index = edges[i] - first
            data.eigvals = pairs.values[i : i + 1].float()
            data.eigmask = pairs.mask[i : i + 1]
            data.eigvecs = vectors[i]
            data.rw_pe = walks[i]
            data.pos, data.y = data.pos.float(), data.y.float()
            prepared.append(data)
    return prepared


def split(items: list, args) -> tuple[list, list, list]:
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(args.seed))
    train = [items[i] for i in order[: args.train]]
    val = [items[i] for i in order[args.train : args.train + args.val]]
    test = [items[i] for i in order[args.train + args.val :]]
    return train, val, test


@torch.no_grad()
def mae(model, loader, mean, std) -> float:
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        prediction = model(batch) * std + mean
        total += float((prediction - batch.y).abs().sum())
        count += batch.y.numel()
    return total / count


def run(pe: str, train, val, test, args) -> dict:
    torch.manual_seed(args.seed)
    y = torch.cat([d.y for d in train])
    mean, std = float(y.mean()), float(y.std())
    model = GINERegressor(
        pe, hidden=args.hidden, num_layers=args.layers, k=args.k, rw_steps=args.rw_steps
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.7, patience=3)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    val_loader = DataLoader(val, batch_size=256)
    test_loader = DataLoader(test, batch_size=256)
    start, best, best_state, curve = time.perf_counter(), math.inf, None, []
    epochs = 0
    progress = tqdm(range(args.epochs), desc=NAMES[pe], leave=False)
    for epoch in progress:
        model.train()
        for batch in loader:
            optimizer.zero_grad()
            loss = (model(batch) - (batch.y - mean) / std).abs().mean()
            loss.backward()
            optimizer.step()
        epochs = epoch + 1
        val_mae = mae(model, val_loader, mean, std)
        scheduler.step(val_mae)
        curve.append((time.perf_counter() - start, val_mae))
        progress.set_postfix(val_mae=f"{val_mae:.4f}")
        if val_mae < best:
            best, best_state = val_mae, {k: v.clone() for k, v in model.state_dict().items()}
        if time.perf_counter() - start > 60 * args.minutes:
            break
    model.load_state_dict(best_state)
    return {
        "encoding": NAMES[pe],
        "test_mae": mae(model, test_loader, mean, std),
        "val_mae": best,
        "epochs": epochs,
        "minutes": (time.perf_counter() - start) / 60,
        "parameters": sum(p.numel() for p in model.parameters()),
        "curve": curve,
    }


def plot(results: list, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for r in results:
        t, v = zip(*r["curve"], strict=True)
        left.plot([x / 60 for x in t], v, label=r["encoding"])
    left.set(xlabel="minutes", ylabel=f"validation MAE ({args.target})", yscale="log")
    left.legend()
    right.bar([r["encoding"] for r in results], [r["test_mae"] for r in results])
    right.set(ylabel=f"test MAE ({args.target})", title=f"QM9 {args.target}, {args.train} train")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="gap", help="QM9 target (default: HOMO-LUMO gap, eV)")
    parser.add_argument("--molecules", type=int, default=12000, help="first N molecules of QM9")
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--pes", nargs="+", default=list(PE_CHOICES), choices=PE_CHOICES)
    parser.add_argument("--minutes", type=float, default=4.5, help="budget per encoding")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--k", type=int, default=8, help="eigenpairs")
    parser.add_argument("--rw-steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--root", default=None, help="QM9 processed folder (default: cache)")
    parser.add_argument("--out", default="qm9_pe_results")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.root is None:
        args.root = str(cache_dir() / "qm9")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.train + args.val >= args.molecules:
        parser.error("--train + --val must leave molecules for the test split")
    train, val, test = split(prepare(args), args)
    results = [run(pe, train, val, test, args) for pe in args.pes]
    lines = [
        f"QM9 `{args.target}`: {len(train)} train / {len(val)} val / {len(test)} test molecules, "
        f"GINE {args.layers}x{args.hidden}, {args.minutes} min per encoding",
        "",
        "| encoding | test MAE | best val MAE | epochs | minutes | parameters |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['encoding']} | {r['test_mae']:.4f} | {r['val_mae']:.4f} | {r['epochs']} | "
            f"{r['minutes']:.1f} | {r['parameters']:,} |"
        )
    table = "\n".join(lines)
    print(table)
    (out / "qm9_pe.md").write_text(table + "\n")
    (out / "qm9_pe.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    plot(results, args, out / "qm9_pe.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
