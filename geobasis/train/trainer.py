"""Training loop for :class:`geobasis.nn.Potential` and :class:`geobasis.nn.FAENet`:
energies and forces, EMA, checkpoints, resumption, data-parallel processes, and a test report.

The loss per batch is

.. math::

    \\mathcal L = w_E \\Big\\langle \\Big(\\frac{E - \\hat E}{N\\, \\sigma}\\Big)^2 \\Big\\rangle
        + w_F \\Big\\langle \\Big(\\frac{F - \\hat F}{\\sigma}\\Big)^2 \\Big\\rangle

with :math:`\\sigma` the RMS force of the training set (so both terms are of unit scale)
and :math:`N` the number of atoms.  Batches come in an order fixed by ``(seed, epoch)``,
so a run resumed from any checkpoint (end of epoch, or every ``checkpoint_every`` steps)
replays exactly what the uninterrupted run would have done.  With several processes
(``torchrun``), every rank takes its share of each batch order and gradients are
averaged with an all-reduce before each step (gloo on CPU, NCCL on CUDA), so all ranks
hold identical parameters.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch_geometric.loader import DataLoader
from torch_geometric.utils import scatter
from tqdm import tqdm

from geobasis.data.molecules import (
    RadiusGraph,
    random_split,
    read_extxyz,
    read_rmd17,
    xtb_md_dataset,
)
from geobasis.nn import MODELS, AtomisticModel
from geobasis.train.checkpoint import load_checkpoint, save_checkpoint
from geobasis.train.config import TrainConfig

__all__ = [
    "train",
    "evaluate",
    "load_structures",
    "load_model",
    "build_model",
    "prepare_structures",
]

_METRIC_FIELDS = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "val_loss",
    "val_energy_mae_meV",
    "val_force_mae_meV_per_A",
    "seconds",
]


def load_structures(
    spec: str, num_frames: int = 1000, seed: int = 0, progress: bool = True
) -> list:
    """``"xtb:<molecule>"`` (generated, cached), an rMD17 ``.npz`` or an (extended) ``.xyz``."""
    if spec.startswith("xtb:"):
        return xtb_md_dataset(spec[4:], num_frames=num_frames, seed=seed, progress=progress)
    if spec.startswith("qm9"):  # qm9[:<target>[:<max molecules>]], energies only
        from geobasis.data.molecules import cache_dir
        from geobasis.data.qm9 import QM9

        parts = spec.split(":")
        target = parts[1] if len(parts) > 1 else "U0"
        limit = int(parts[2]) if len(parts) > 2 else None
        dataset = QM9(cache_dir() / "qm9", target, limit)
        if getattr(dataset[0], "energy", None) is None:
            raise ValueError(f"--data {spec}: potentials train on energy targets (U0, U, H, G)")
        return list(dataset)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"--data {spec}: no such file (or use 'xtb:<molecule>')")
    if path.suffix == ".npz":
        return read_rmd17(path)
    if path.suffix in (".xyz", ".extxyz"):
        return read_extxyz(path)
    raise ValueError(f"--data {spec}: unknown format; use an rMD17 .npz or an extended .xyz")


def _distributed() -> tuple[int, int, bool]:
    """``(rank, world size, whether this call created the process group)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    created = False
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        created = True
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world, created


def prepare_structures(structures: list, cutoff: float, dtype: torch.dtype) -> list:
    """Radius graphs within ``cutoff`` and floating fields cast to ``dtype``."""
    graph = RadiusGraph(cutoff)
    out = []
    for data in structures:
        data = graph(data)
        for key in ("pos", "energy", "forces", "cell", "stress"):
            if getattr(data, key, None) is not None:
                data[key] = data[key].to(dtype)
        out.append(data)
    return out


class _EMA:
    """Exponential moving average of the parameters, swapped in for evaluation."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: p.detach().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, p in model.named_parameters():
            self.shadow[name].mul_(decay).add_(p.detach(), alpha=1 - decay)

    @torch.no_grad()
    def swap(self, model: torch.nn.Module) -> None:
        for name, p in model.named_parameters():
            saved = p.detach().clone()
            p.copy_(self.shadow[name])
            self.shadow[name] = saved


def _loss(out: dict, batch, scale: float, config: TrainConfig) -> torch.Tensor:
    atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(out["energy"].dtype)
    energy_error = (out["energy"] - batch.energy) / (atoms * scale)
    loss = config.energy_weight * energy_error.square().mean()
    if getattr(batch, "forces", None) is not None:  # energy-only data (QM9) has none
        force_error = (out["forces"] - batch.forces) / scale
        loss = loss + config.force_weight * force_error.square().mean()
    return loss


def evaluate(model: AtomisticModel, structures: list, batch_size: int = 32, device="cpu") -> dict:
    """Energy (meV per structure) and force (meV/Å per component) MAE and RMSE."""
    model.eval()
    sums = {"e_abs": 0.0, "e_sq": 0.0, "f_abs": 0.0, "f_sq": 0.0, "graphs": 0, "forces": 0}
    predictions: dict[str, list] = {"energy": [], "energy_ref": [], "forces": [], "forces_ref": []}
    for batch in DataLoader(structures, batch_size=batch_size):
        batch = batch.to(device)
        has_forces = getattr(batch, "forces", None) is not None
        out = model(batch, compute_forces=has_forces)
        e = (out["energy"] - batch.energy).detach().double()
        sums["e_abs"] += float(e.abs().sum())
        sums["e_sq"] += float(e.square().sum())
        sums["graphs"] += e.numel()
        predictions["energy"].append(out["energy"].detach().cpu())
        predictions["energy_ref"].append(batch.energy.cpu())
        if has_forces:
            f = (out["forces"] - batch.forces).detach().double()
            sums["f_abs"] += float(f.abs().sum())
            sums["f_sq"] += float(f.square().sum())
            sums["forces"] += f.numel()
            predictions["forces"].append(out["forces"].detach().cpu().flatten())
            predictions["forces_ref"].append(batch.forces.cpu().flatten())
    n, m = max(sums["graphs"], 1), max(sums["forces"], 1)
    report = {
        "energy_mae_meV": 1e3 * sums["e_abs"] / n,
        "energy_rmse_meV": 1e3 * math.sqrt(sums["e_sq"] / n),
        "predictions": {k: torch.cat(v) for k, v in predictions.items() if v},
    }
    if sums["forces"]:
        report["force_mae_meV_per_A"] = 1e3 * sums["f_abs"] / m
        report["force_rmse_meV_per_A"] = 1e3 * math.sqrt(sums["f_sq"] / m)
    return report


def build_model(config: TrainConfig, avg_num_neighbors: float = 10.0) -> AtomisticModel:
    """The model named by ``config.model`` (:data:`geobasis.nn.models.MODELS`)."""
    common = {
        "channels": config.channels,
        "num_layers": config.num_layers,
        "cutoff": config.cutoff,
        "num_radial": config.num_radial,
        "avg_num_neighbors": avg_num_neighbors,
    }
    if config.model == "potential":
        specific = {
            "lmax": config.lmax,
            "radial_hidden": config.radial_hidden,
            "product": config.product,
            "nonlinearity": config.nonlinearity,
        }
    elif config.model == "faenet":
        specific = {"group": config.frame_group, "frames": config.frames}
    else:
        raise ValueError(f"unknown model {config.model!r}; choose one of {sorted(MODELS)}")
    return MODELS[config.model](**common, **specific)


def load_model(path: str | Path, ema: bool = True) -> AtomisticModel:
    """The model of a checkpoint (``best.pt`` / ``last.pt``), EMA weights by default."""
    state = load_checkpoint(path)
    model_config = dict(state["model_config"])
    name = model_config.pop("model", "potential")
    if name not in MODELS:
        raise ValueError(f"{path}: unknown model {name!r}; known: {sorted(MODELS)}")
    model = MODELS[name](**model_config)
    model.load_state_dict(state["model"])
    if ema and state.get("ema"):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(state["ema"][name])
    return model.eval()


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state()}


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """Drop metric rows beyond the checkpoint a resumed run restarts from."""
    if not path.exists():
        return
    rows = []
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            try:  # a row cut short by a kill is dropped
                if int(row["epoch"]) <= epochs_done and None not in row.values():
                    rows.append(row)
            except (TypeError, ValueError):
                continue
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=_METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a training run; returns the test metrics (rank 0)."""
    rank, world, created_group = _distributed()
    if config.threads:
        torch.set_num_threads(config.threads)
    name = config.name or time.strftime("run-%Y%m%d-%H%M%S")
    run_dir = Path(config.runs_dir) / name
    last, best = run_dir / "last.pt", run_dir / "best.pt"
    state = None
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"--resume: no checkpoint {last}; start the run without it")
        state = load_checkpoint(last)
        for stale in run_dir.glob("*.tmp"):  # a write cut short by the kill: never renamed
            stale.unlink(missing_ok=True)
        config = TrainConfig.from_dict({**state["config"], "max_minutes": config.max_minutes})
    elif last.exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume or another --name")
    config.name = name
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    dtype = torch.get_default_dtype()

    structures = load_structures(config.data, config.num_frames, config.seed, progress)
    if config.test_data:
        train_idx, val_idx = random_split(
            len(structures), [config.train_size, config.val_size], config.seed
        )
        test_set = load_structures(config.test_data, config.num_frames, config.seed, progress)
        test_idx = torch.arange(len(test_set))
        if isinstance(config.test_size, int) and config.test_size < len(test_set):
            test_idx = test_idx[: config.test_size]
        test_set = [test_set[i] for i in test_idx.tolist()]
    else:
        train_idx, val_idx, test_idx = random_split(
            len(structures), [config.train_size, config.val_size, config.test_size], config.seed
        )
        test_set = [structures[i] for i in test_idx.tolist()]
    splits = {"train": train_idx.tolist(), "val": val_idx.tolist(), "test": test_idx.tolist()}
    train_set = prepare_structures([structures[i] for i in splits["train"]], config.cutoff, dtype)
    val_set = prepare_structures([structures[i] for i in splits["val"]], config.cutoff, dtype)
    test_set = prepare_structures(test_set, config.cutoff, dtype)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.to_yaml(run_dir / "config.yaml")
        (run_dir / "splits.json").write_text(json.dumps(splits))

    seen = set(torch.cat([d.z for d in train_set]).tolist())
    unseen = set(torch.cat([d.z for d in val_set + test_set]).tolist()) - seen
    if unseen and rank == 0:
        warnings.warn(
            f"elements {sorted(unseen)} occur in the validation/test split but not in the "
            "training split: their reference energies are unknown (zero)",
            stacklevel=2,
        )
    neighbours = sum(d.edge_index.shape[1] for d in train_set) / sum(d.num_nodes for d in train_set)
    model = build_model(config, max(neighbours, 1.0)).to(device)
    from torch_geometric.data import Batch

    everything = Batch.from_data_list(train_set)
    model.fit_reference_energies(everything.z, everything.batch, everything.energy)
    if getattr(everything, "forces", None) is not None:
        scale = float(everything.forces.square().mean().sqrt().clamp(min=1e-6))
    else:  # energies only: the per-atom residual scale of the reference-energy fit
        scale = float(model.energy_scale)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / (config.batch_size * world))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs * steps_per_epoch, eta_min=config.min_lr
    )
    ema = _EMA(model, config.ema_decay)
    # --compile: energies and forces (torch.func.grad) in one compiled graph, dynamic
    # shapes so that batches of other sizes reuse it; compiled on the first step
    compiled = None
    if config.compile:
        from geobasis.typing import WITH_CPU_COMPILER

        if device.type == "cpu" and not WITH_CPU_COMPILER:
            raise RuntimeError(
                "--compile needs a C++ compiler and the Python headers for torch.compile on "
                "CPU (e.g. apt install g++ python3-dev); or train without --compile"
            )
        compiled = torch.compile(model.atomic_energies_and_forces, dynamic=True)
    start_epoch, start_step, global_step, best_val = 0, 0, 0, math.inf
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ema.shadow = {k: v.to(device) for k, v in state["ema"].items()}
        start_epoch, start_step = state["epoch"], state["step_in_epoch"]
        global_step, best_val = state["global_step"], state["best_val"]
        torch.set_rng_state(state["rng"]["torch"])
        if rank == 0:
            _truncate_metrics(run_dir / "metrics.csv", start_epoch)

    def checkpoint(epoch: int, step_in_epoch: int, path: Path) -> None:
        if rank != 0:
            return
        save_checkpoint(
            {
                "model": model.state_dict(),
                "ema": ema.shadow,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "global_step": global_step,
                "best_val": best_val,
                "rng": _rng_state(),
                "config": config.to_dict(),
                "model_config": model.config,
            },
            path,
        )

    started = time.perf_counter()
    out_of_time = False
    metrics_path = run_dir / "metrics.csv"
    epoch = start_epoch - 1  # the last finished epoch, if the loop has nothing left to do
    for epoch in range(start_epoch, config.epochs):
        order = torch.randperm(
            len(train_set), generator=torch.Generator().manual_seed(config.seed * 1000 + epoch)
        )
        mine = order[rank::world].tolist()
        loader = DataLoader([train_set[i] for i in mine], batch_size=config.batch_size)
        losses = []
        bar = tqdm(
            total=len(loader),
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not progress or rank != 0,
            leave=False,
        )
        for step, batch in enumerate(loader):
            if step < start_step:  # resumed mid-epoch: these steps are done
                bar.update(1)
                continue
            model.train()
            batch = batch.to(device)
            has_forces = getattr(batch, "forces", None) is not None
            if compiled is not None and has_forces and getattr(batch, "cell", None) is None:
                atomic, forces = compiled(batch.pos, batch.z, batch.batch, batch.edge_index)
                energy = scatter(atomic, batch.batch, 0, dim_size=batch.num_graphs)
                out = {"energy": energy, "forces": forces}
            else:
                out = model(batch, compute_forces=has_forces)
            loss = _loss(out, batch, scale, config)
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            if world > 1:
                for p in model.parameters():
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= world
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            ema.update(model, global_step)
            global_step += 1
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
                checkpoint(epoch, step + 1, last)
            if config.max_minutes and time.perf_counter() - started > 60 * config.max_minutes:
                out_of_time = True
                break
        bar.close()
        start_step = 0
        ema.swap(model)
        val = evaluate(model, val_set, device=device)
        val_loss = val["energy_mae_meV"] / 1e3 + val.get("force_mae_meV_per_A", 0.0) / 1e3
        if rank == 0 and val_loss < best_val:
            best_val = val_loss
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "ema": {},
                    "model_config": model.config,
                    "config": config.to_dict(),
                    "epoch": epoch + 1,
                },
                best,
            )
        ema.swap(model)
        row = {
            "epoch": epoch + 1,
            "step": global_step,
            "lr": scheduler.get_last_lr()[0],
            "train_loss": sum(losses) / max(len(losses), 1),
            "val_loss": val_loss,
            "val_energy_mae_meV": val["energy_mae_meV"],
            "val_force_mae_meV_per_A": val.get("force_mae_meV_per_A", float("nan")),
            "seconds": time.perf_counter() - started,
        }
        if rank == 0:
            new = not metrics_path.exists()
            with open(metrics_path, "a", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=_METRIC_FIELDS)
                if new:
                    writer.writeheader()
                writer.writerow(row)
            if progress:
                print(
                    f"epoch {epoch + 1:3d}  loss {row['train_loss']:.4f}  val E "
                    f"{row['val_energy_mae_meV']:.1f} meV  F "
                    f"{row['val_force_mae_meV_per_A']:.1f} meV/Å  "
                    f"({row['seconds']:.0f} s)"
                )
        checkpoint(epoch + 1, 0, last)
        if out_of_time:
            break
    checksums = [float(sum(p.detach().double().sum() for p in model.parameters()))]
    if world > 1:  # every rank must hold the same parameters: gather one checksum each
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, checksums[0])
        checksums = gathered
        torch.distributed.barrier()
        if created_group:  # no collective follows: close it on every rank before exiting
            torch.distributed.destroy_process_group()
    if rank != 0:
        return {}
    best_model = load_model(best).to(device)
    test = evaluate(best_model, test_set, device=device)
    predictions = test.pop("predictions")
    report = {
        **test,
        "test_structures": len(test_set),
        "epochs": epoch + 1,
        "wall_seconds": time.perf_counter() - started,
        "world_size": world,
        "parameter_checksums": checksums,
    }
    (run_dir / "test_metrics.json").write_text(json.dumps(report, indent=2))
    try:
        from geobasis.train.plots import learning_curve, parity_plot

        learning_curve(metrics_path, run_dir / "learning_curve.png")
        parity_plot(predictions, run_dir / "parity.png")
    except ImportError:  # matplotlib is optional
        pass
    return report
