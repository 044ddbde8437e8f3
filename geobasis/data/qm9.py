r"""QM9 (Ramakrishnan et al., Sci. Data 1, 140022, 2014) from the offline ``qm9pack`` package.

``qm9pack`` ships the 130,831 molecules (B3LYP/6-31G(2df,p) geometries and properties) as
CSV files inside the package; they are parsed here with the standard library (the
package's own loader needs pandas and ``pkg_resources``), once, into a PyG
``InMemoryDataset`` under ``root``.  Energies in Hartree are converted to eV
(1 Ha = 27.211386245988 eV).

Targets (``target=``): ``U0``, ``U``, ``H``, ``G`` (atomisation not subtracted: total
energies, eV), ``HOMO``, ``LUMO``, ``gap``, ``ZPVE`` (eV), ``mu`` (D), ``alpha``
(bohr³), ``R2`` (bohr²), ``Cv`` (cal/mol/K).  Each ``Data`` has ``pos [N, 3]`` (Å),
``z [N]``, ``y [1]`` (the target) and, for energy targets, ``energy [1]``.
"""

from __future__ import annotations

import ast
import csv
import importlib.util
import os
from pathlib import Path

import torch
from torch_geometric.data import Data, InMemoryDataset
from tqdm import tqdm

from geobasis.serialization import atomic_path

__all__ = ["QM9", "QM9_TARGETS", "HARTREE_IN_EV", "qm9pack_folder"]

HARTREE_IN_EV = 27.211386245988
_ELEMENTS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
#: target name -> (CSV column, factor to the stored unit, is a total energy)
QM9_TARGETS = {
    "U0": ("InternalEnergy_0K_au", HARTREE_IN_EV, True),
    "U": ("InternalEnergy_298K_au", HARTREE_IN_EV, True),
    "H": ("Enthalphy_298K_au", HARTREE_IN_EV, True),
    "G": ("GibbsFreeEnergy_298K_au", HARTREE_IN_EV, True),
    "HOMO": ("HOMO_au", HARTREE_IN_EV, False),
    "LUMO": ("LUMO_au", HARTREE_IN_EV, False),
    "gap": ("HOMO_LUMO_gap_au", HARTREE_IN_EV, False),
    "ZPVE": ("ZPVE_au", HARTREE_IN_EV, False),
    "mu": ("Dipole_debye", 1.0, False),
    "alpha": ("Polarizability_bohr3", 1.0, False),
    "R2": ("R2_bohr2", 1.0, False),
    "Cv": ("Heatcapacity_Cv_cal_mol_K", 1.0, False),
}


def qm9pack_folder() -> Path:
    """The CSV folder of the installed ``qm9pack`` (found without importing it)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("QM9 needs the qm9pack package: pip install 'geobasis[qm9]'")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not (folder / "qm9_part1.csv").exists():
        raise FileNotFoundError(f"{folder}: qm9pack's CSV files are missing")
    return folder


def _read_rows(folder: Path, limit: int | None):
    csv.field_size_limit(1 << 24)
    count = 0
    for part in ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"):
        with open(folder / part, newline="") as file:
            for row in csv.DictReader(file):
                yield part, row
                count += 1
                if limit is not None and count >= limit:
                    return


class QM9(InMemoryDataset):
    """QM9 molecules with one target, processed once into ``root/processed``.

    Args:
        root: folder for the processed file.
        target: one of :data:`QM9_TARGETS`.
        max_molecules: keep the first this many (in QM9 index order), for quick runs.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        target: str = "U0",
        max_molecules: int | None = None,
        transform=None,
    ) -> None:
        if target not in QM9_TARGETS:
            raise ValueError(f"unknown QM9 target {target!r}; choose one of {list(QM9_TARGETS)}")
        self.target, self.max_molecules = target, max_molecules
        super().__init__(str(root), transform)
        self.load(self.processed_paths[0])

    @property
    def raw_file_names(self) -> list[str]:
        return []

    @property
    def processed_file_names(self) -> list[str]:
        size = "all" if self.max_molecules is None else str(self.max_molecules)
        return [f"qm9_{self.target}_{size}.pt"]

    def download(self) -> None:  # the data ship with qm9pack: nothing to download
        pass

    def process(self) -> None:
        column, factor, is_energy = QM9_TARGETS[self.target]
        folder = qm9pack_folder()
        items = []
        total = self.max_molecules or 130_831
        for part, row in tqdm(_read_rows(folder, self.max_molecules), total=total, desc="QM9"):
            try:
                elements = ast.literal_eval(row["Elements"])
                pos = torch.tensor(ast.literal_eval(row["XYZ_Ang"]), dtype=torch.float64)
                value = float(row[column].replace("*^", "e")) * factor
            except (ValueError, SyntaxError, KeyError) as error:
                raise ValueError(f"{folder / part}: bad row {row.get('Index')}: {error}") from error
            data = Data(
                pos=pos,
                z=torch.tensor([_ELEMENTS[e] for e in elements]),
                y=torch.tensor([value], dtype=torch.float64),
                idx=int(row["Index"]),
            )
            if is_energy:
                data.energy = data.y.clone()
            items.append(data)
        with atomic_path(self.processed_paths[0]) as temporary:  # never half a file
            self.save(items, str(temporary))
