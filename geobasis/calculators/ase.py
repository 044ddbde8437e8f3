"""ASE calculator for a trained :class:`geobasis.nn.Potential` or :class:`geobasis.nn.FAENet`,
from a training checkpoint or from an artifact of ``geobasis export``.

Energies in eV, forces in eV/Å, stress (periodic structures) in eV/Å³ as ASE's Voigt
6-vector.  A checkpoint runs in float64 by default, which keeps molecular dynamics
energy-conserving to the integrator's accuracy; an exported artifact runs in the dtype
it was exported in.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from torch_geometric.data import Data

from geobasis.calculators.export import is_exported, load_exported
from geobasis.graph import radius_graph
from geobasis.nn import AtomisticModel

__all__ = ["GeoBasisCalculator"]


class GeoBasisCalculator(Calculator):
    """``GeoBasisCalculator("runs/<name>/best.pt")``, ``GeoBasisCalculator("model.pt2")``
    (an exported artifact, :mod:`geobasis.calculators.export`) or
    ``GeoBasisCalculator(model=...)``.

    Elements the model never saw in training are an error unless ``allow_unseen=True``.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        model: AtomisticModel | None = None,
        device: str = "cpu",
        dtype: torch.dtype = torch.float64,
        allow_unseen: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if (checkpoint is None) == (model is None):
            raise ValueError(
                "give exactly one of checkpoint (a .pt checkpoint or .pt2 export) or model"
            )
        self.allow_unseen = allow_unseen
        self.exported = None
        if checkpoint is not None and is_exported(checkpoint):
            self._load_exported(checkpoint, device)
            return
        if model is None:
            from geobasis.nn import load_model

            model = load_model(checkpoint)
        else:  # the caller's model stays as it is (dtype, device, mode)
            model = copy.deepcopy(model)
        self.model = model.to(device=device, dtype=dtype).eval()
        self.device, self.dtype = torch.device(device), dtype

    def _load_exported(self, path: str | Path, device: str) -> None:
        self.exported, metadata = load_exported(path)
        self.model, self.metadata = None, metadata
        self.device, self.dtype = torch.device(device), getattr(torch, metadata["dtype"])

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.exported is not None:
            self.results = self._exported_results(self.atoms)
            return
        atoms = self.atoms
        self.model.check_elements(torch.as_tensor(atoms.numbers), self.allow_unseen)
        data = Data(
            pos=torch.tensor(atoms.positions, dtype=self.dtype, device=self.device),
            z=torch.tensor(atoms.numbers, dtype=torch.long, device=self.device),
        )
        periodic = bool(np.any(atoms.pbc))
        if periodic:
            data.cell = torch.tensor(atoms.cell.array, dtype=self.dtype, device=self.device)[None]
            data.pbc = torch.tensor(atoms.pbc, device=self.device)[None]
        out = self.model(data, compute_stress=periodic)
        energy = float(out["energy"].detach()[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": self._atomic_energies(data),
            "forces": out["forces"].detach().cpu().numpy().astype(np.float64),
        }
        if periodic:
            from ase.stress import full_3x3_to_voigt_6_stress

            stress = out["stress"].detach()[0].cpu().numpy().astype(np.float64)
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)

    @torch.no_grad()
    def _atomic_energies(self, data: Data) -> np.ndarray:
        """``[N]`` per-atom energies (reference energies included); they sum to the energy."""
        pos = data.pos
        cell = None if getattr(data, "cell", None) is None else data.cell.reshape(-1, 3, 3)
        graph = self.model.atomic_graph(data, pos, cell)
        return self.model.atomic_energies(graph).cpu().numpy().astype(np.float64)

    def _exported_results(self, atoms) -> dict:
        """Energies, forces and (periodic) stress from the exported artifact."""
        trained = self.metadata["trained_elements"]
        unseen = sorted(set(atoms.numbers.tolist()) - set(trained)) if trained else []
        if unseen and not self.allow_unseen:
            raise ValueError(
                f"elements {unseen} were not in this model's training data (trained on "
                f"{trained}); pass allow_unseen=True to predict anyway"
            )
        inputs = exported_inputs(atoms, self.metadata["cutoff"], self.dtype, self.device)
        energy, atomic, forces, virial = self.exported(*inputs)
        results = {
            "energy": float(energy),
            "free_energy": float(energy),
            "energies": atomic.detach().cpu().numpy().astype(np.float64),
            "forces": forces.detach().cpu().numpy().astype(np.float64),
        }
        if np.any(atoms.pbc):
            from ase.stress import full_3x3_to_voigt_6_stress

            stress = -virial.detach().cpu().numpy().astype(np.float64) / atoms.get_volume()
            results["stress"] = full_3x3_to_voigt_6_stress(stress)
        return results


def exported_inputs(
    atoms, cutoff: float, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, ...]:
    """``(positions, atomic_numbers, edge_index, shifts, cell)`` of an ASE ``Atoms`` for an
    exported artifact: every pair within ``cutoff`` (periodic images where ``atoms.pbc``)."""
    positions = torch.tensor(atoms.positions, dtype=dtype, device=device)
    numbers = torch.tensor(atoms.numbers, dtype=torch.long, device=device)
    if np.any(atoms.pbc):
        cell = torch.tensor(atoms.cell.array, dtype=dtype, device=device)
        pbc = torch.tensor(atoms.pbc, device=device)[None]
        edge_index, shifts = radius_graph(positions, cutoff, cell=cell[None], pbc=pbc)
        return positions, numbers, edge_index, shifts.to(dtype), cell
    edge_index = radius_graph(positions, cutoff)
    shifts = positions.new_zeros(edge_index.shape[1], 3)
    return positions, numbers, edge_index, shifts, positions.new_zeros(3, 3)
