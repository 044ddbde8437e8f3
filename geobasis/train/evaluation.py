r"""The training loss and the error metrics of a model on a set of structures.

.. math::

    \mathcal L = w_E \Big\langle \Big(\frac{E - \hat E}{N\, \sigma}\Big)^2 \Big\rangle
        + w_F \Big\langle \Big(\frac{F - \hat F}{\sigma}\Big)^2 \Big\rangle

with :math:`\sigma` the RMS force of the training set (so both terms are of unit scale)
and :math:`N` the number of atoms.  Metrics: energy MAE / RMSE per structure (meV) and
force MAE / RMSE per component (meV/Å).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch_geometric.loader import DataLoader

from geobasis.nn import AtomisticModel

__all__ = ["energy_force_loss", "evaluate"]


def energy_force_loss(
    out: dict[str, Tensor], batch, scale: float, energy_weight: float, force_weight: float
) -> Tensor:
    """The loss above for one batch (energy-only data, e.g. QM9, have no force term)."""
    atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(out["energy"].dtype)
    energy_error = (out["energy"] - batch.energy) / (atoms * scale)
    loss = energy_weight * energy_error.square().mean()
    if getattr(batch, "forces", None) is not None:
        force_error = (out["forces"] - batch.forces) / scale
        loss = loss + force_weight * force_error.square().mean()
    return loss


def evaluate(model: AtomisticModel, structures: list, batch_size: int = 32, device="cpu") -> dict:
    """Energy (meV per structure) and force (meV/Å per component) MAE and RMSE, and the
    predictions (``report["predictions"]``: energies and flattened forces with references)."""
    model.eval()
    sums = {"e_abs": 0.0, "e_sq": 0.0, "f_abs": 0.0, "f_sq": 0.0, "graphs": 0, "forces": 0}
    predictions: dict[str, list] = {"energy": [], "energy_ref": [], "forces": [], "forces_ref": []}
    by_element: dict[int, list[float]] = {}  # z -> [sum of |force error|, components]
    for batch in DataLoader(structures, batch_size=batch_size):
        batch = batch.to(device)
        has_forces = getattr(batch, "forces", None) is not None
        out = model(batch, compute_forces=has_forces)
        _accumulate(sums, predictions, "e", "energy", out["energy"], batch.energy)
        if has_forces:
            _accumulate(sums, predictions, "f", "forces", out["forces"], batch.forces)
            _per_element(by_element, batch.z, out["forces"] - batch.forces)
    n, m = max(sums["graphs"], 1), max(sums["forces"], 1)
    report = {
        "energy_mae_meV": 1e3 * sums["e_abs"] / n,
        "energy_rmse_meV": 1e3 * math.sqrt(sums["e_sq"] / n),
        "predictions": {k: torch.cat(v) for k, v in predictions.items() if v},
    }
    if sums["forces"]:
        report["force_mae_meV_per_A"] = 1e3 * sums["f_abs"] / m
        report["force_rmse_meV_per_A"] = 1e3 * math.sqrt(sums["f_sq"] / m)
        report["force_mae_meV_per_A_by_element"] = {
            str(z): 1e3 * total / count for z, (total, count) in sorted(by_element.items())
        }
    return report


def _accumulate(sums: dict, predictions: dict, tag: str, key: str, value, reference) -> None:
    error = (value - reference).detach().double()
    sums[f"{tag}_abs"] += float(error.abs().sum())
    sums[f"{tag}_sq"] += float(error.square().sum())
    sums["graphs" if tag == "e" else "forces"] += error.numel()
    predictions[key].append(value.detach().cpu().flatten())
    predictions[f"{key}_ref"].append(reference.cpu().flatten())


def _per_element(by_element: dict, z, error) -> None:
    """Accumulate the force error per atomic number (``{z: [sum |error|, components]}``)."""
    absolute = error.detach().double().abs().sum(-1)
    for element in z.unique().tolist():
        mask = z == element
        total = by_element.setdefault(int(element), [0.0, 0])
        total[0] += float(absolute[mask].sum())
        total[1] += 3 * int(mask.sum())
