"""ASE calculator for a trained :class:`geobasis.nn.Potential` or :class:`geobasis.nn.FAENet`.

Energies in eV, forces in eV/Å, stress (periodic structures) in eV/Å³ as ASE's Voigt
6-vector.  The model runs in float64 by default, which keeps molecular dynamics
energy-conserving to the integrator's accuracy.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from torch_geometric.data import Data

from geobasis.nn import AtomisticModel

__all__ = ["GeoBasisCalculator"]


class GeoBasisCalculator(Calculator):
    """``GeoBasisCalculator("runs/<name>/best.pt")`` or ``GeoBasisCalculator(model=...)``.

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
            raise ValueError("give exactly one of checkpoint (a .pt path) or model")
        if model is None:
            from geobasis.nn import load_model

            model = load_model(checkpoint)
        else:  # the caller's model stays as it is (dtype, device, mode)
            model = copy.deepcopy(model)
        self.model = model.to(device=device, dtype=dtype).eval()
        self.device, self.dtype = torch.device(device), dtype
        self.allow_unseen = allow_unseen

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
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
