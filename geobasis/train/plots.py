"""Learning-curve and parity plots of a run (matplotlib, written as PNG)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

__all__ = ["learning_curve", "parity_plot"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(metrics_csv: str | Path, path: str | Path) -> None:
    """Training loss and validation energy / force MAE per epoch (log scale)."""
    with open(metrics_csv, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return
    plt = _pyplot()
    epochs = [int(r["epoch"]) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(epochs, [float(r["train_loss"]) for r in rows])
    axes[0].set_ylabel("training loss")
    axes[1].plot(epochs, [float(r["val_energy_mae_meV"]) for r in rows], label="energy (meV)")
    axes[1].plot(
        epochs, [float(r["val_force_mae_meV_per_A"]) for r in rows], label="forces (meV/Å)"
    )
    axes[1].set_ylabel("validation MAE")
    axes[1].legend()
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parity_plot(predictions: dict[str, torch.Tensor], path: str | Path) -> None:
    """Predicted vs reference energies and force components on the test split."""
    plt = _pyplot()
    pairs = [("energy", "eV")] + ([("forces", "eV/Å")] if "forces" in predictions else [])
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.5 * len(pairs), 4.2), squeeze=False)
    for ax, (key, unit) in zip(axes[0], pairs, strict=True):
        reference, predicted = predictions[f"{key}_ref"], predictions[key]
        ax.scatter(reference, predicted, s=3, alpha=0.5)
        low = float(torch.minimum(reference.min(), predicted.min()))
        high = float(torch.maximum(reference.max(), predicted.max()))
        ax.plot([low, high], [low, high], "k--", lw=0.8)
        ax.set_xlabel(f"reference {key} ({unit})")
        ax.set_ylabel(f"predicted {key} ({unit})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
