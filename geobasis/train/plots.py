"""Learning-curve and parity plots of a run (matplotlib, written as PNG)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

__all__ = ["learning_curve", "parity_plot"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _column(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) if r.get(key) not in (None, "") else math.nan for r in rows]


def _has_positive(ax) -> bool:
    """Whether any line of ``ax`` has a finite positive value (a log axis needs one)."""
    return any(math.isfinite(y) and y > 0 for line in ax.get_lines() for y in line.get_ydata())


def learning_curve(metrics_csv: str | Path, path: str | Path) -> None:
    """Training and validation loss with the learning rate, and validation energy / force
    MAE per epoch (log scale); the best epoch (lowest validation loss) is marked."""
    with open(metrics_csv, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return
    plt = _pyplot()
    epochs = [int(r["epoch"]) for r in rows]
    val = _column(rows, "val_loss")
    finite = [(v, e) for v, e in zip(val, epochs, strict=True) if math.isfinite(v)]
    best = min(finite)[1] if finite else epochs[-1]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(epochs, _column(rows, "train_loss"), label="training loss")
    axes[0].plot(epochs, val, label="validation loss (E + F MAE, eV, eV/Å)")
    rate = axes[0].twinx()
    rate.plot(epochs, _column(rows, "lr"), color="0.6", ls=":", label="learning rate")
    rate.set_ylabel("learning rate")
    if _has_positive(rate):
        rate.set_yscale("log")
    axes[1].plot(epochs, _column(rows, "val_energy_mae_meV"), label="energy MAE (meV)")
    axes[1].plot(epochs, _column(rows, "val_force_mae_meV_per_A"), label="force MAE (meV/Å)")
    axes[1].set_ylabel("validation MAE")
    for ax in axes:
        if _has_positive(ax):  # no validation set: nothing to put on a log axis
            ax.set_yscale("log")
        ax.axvline(best, color="k", lw=0.8, ls="--", label=f"best epoch ({best})")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parity_plot(
    predictions: dict[str, torch.Tensor], path: str | Path, split: str = "test split"
) -> None:
    """Predicted vs reference energies and force components of ``split``, each panel
    annotated with its MAE and RMSE."""
    plt = _pyplot()
    pairs = [("energy", "eV", "meV")] + (
        [("forces", "eV/Å", "meV/Å")] if "forces" in predictions else []
    )
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.8 * len(pairs), 4.4), squeeze=False)
    for ax, (key, unit, small) in zip(axes[0], pairs, strict=True):
        reference, predicted = predictions[f"{key}_ref"], predictions[key]
        error = (predicted - reference).double()
        mae, rmse = 1e3 * float(error.abs().mean()), 1e3 * float(error.square().mean().sqrt())
        ax.scatter(reference, predicted, s=3, alpha=0.5)
        low = float(torch.minimum(reference.min(), predicted.min()))
        high = float(torch.maximum(reference.max(), predicted.max()))
        ax.plot([low, high], [low, high], "k--", lw=0.8)
        ax.set_xlabel(f"reference {key} ({unit})")
        ax.set_ylabel(f"predicted {key} ({unit})")
        ax.set_title(f"{key}: MAE {mae:.3g} {small}, RMSE {rmse:.3g} {small}", fontsize=10)
    fig.suptitle(f"{split} ({len(predictions['energy'])} structures)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
