"""Datasets by name and their splits: what ``geobasis train`` and ``geobasis evaluate`` read.

A *spec* names a dataset in one string:

=====================  =================================================================
``xtb:<molecule>``     GFN2-xTB molecular dynamics generated on the spot (cached)
``qm9[:T[:N]]``        QM9 target ``T`` (default U0), first ``N`` molecules; energies only
``path.npz``           an rMD17 file (``nuclear_charges``, ``coords``, ``energies``, ``forces``)
any other file         anything ASE reads (extended XYZ, ASE ``.db``, ``.traj``): energies,
                       forces, stress and cell, under ``--energy-key`` etc. when renamed
=====================  =================================================================

A new format is one reader in :mod:`geobasis.data.molecules` plus one branch of
:func:`load_dataset`.  Structures come back as ``torch_geometric.data.Data`` in float64
(``pos`` Å, ``energy`` eV, ``forces`` eV/Å); :func:`prepare` adds the radius graph and
casts to the model's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from geobasis.data.molecules import (
    RadiusGraph,
    _structure,
    cache_dir,
    random_split,
    read_ase,
    read_rmd17,
    xtb_md_dataset,
)

__all__ = [
    "load_dataset",
    "read",
    "read_npz",
    "split",
    "prepare",
    "Splits",
    "isolated_atom_energies",
]


def load_dataset(
    spec: str,
    num_frames: int = 1000,
    seed: int = 0,
    progress: bool = True,
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
) -> list[Data]:
    """The structures named by ``spec`` (see the module docstring).

    ``num_frames`` and ``seed`` are those of generated (``xtb:``) data; the keys name where
    a file stores its labels (:func:`read`).
    """
    if spec.startswith("xtb:"):
        return xtb_md_dataset(spec[4:], num_frames=num_frames, seed=seed, progress=progress)
    if spec.startswith("qm9"):
        return _load_qm9(spec)
    return read(spec, energy_key, forces_key, stress_key)


def read(
    path: str | Path,
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
) -> list[Data]:
    """Structures of a file: an ``.npz`` (rMD17, or any arrays with ``energy_key`` and
    ``forces_key`` naming energies ``[F]`` in eV and forces ``[F, N, 3]`` in eV/Å beside
    species ``z``/``nuclear_charges`` and positions ``R``/``coords``), else anything ASE
    reads (extended XYZ, ASE ``.db``, ``.traj``, ...) with labels under the given keys.

    Every structure is checked (finite values, integer species); float64 throughout.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data: no such file {str(path)!r} (or use 'xtb:<molecule>')")
    if path.suffix == ".npz":
        if energy_key is None and forces_key is None:
            return read_rmd17(path)
        return read_npz(path, energy_key or "energies", forces_key or "forces")
    if path.suffix in (".csv", ".txt", ".json", ".yaml"):
        raise ValueError(f"data: unknown format of {str(path)!r}; use .npz or a file ASE reads")
    return read_ase(path, ":", energy_key, forces_key, stress_key)


def isolated_atom_energies(path: str | Path, energy_key: str | None = None) -> dict[int, float]:
    """``{z: E0}`` from a file of single-atom structures with energies (e.g. the
    ``iso_atoms.xyz`` of 3BPA; MACE's ``--E0s``); a structure with more than one atom or
    no energy is an error naming it."""
    out: dict[int, float] = {}
    for index, data in enumerate(read(path, energy_key)):
        if data.num_nodes != 1 or getattr(data, "energy", None) is None:
            raise ValueError(
                f"e0s: structure {index} of {path} is not one atom with an energy; the file "
                "must hold isolated atoms"
            )
        out[int(data.z[0])] = float(data.energy.reshape(-1)[0])
    return out


def read_npz(path: Path, energy_key: str, forces_key: str) -> list[Data]:
    """An ``.npz`` with mapped keys (eV, eV/Å, Å): species ``z``, ``Z`` or
    ``nuclear_charges``; positions ``R``, ``coords`` or ``positions``."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    species = next((arrays[k] for k in ("z", "Z", "nuclear_charges") if k in arrays), None)
    positions = next((arrays[k] for k in ("R", "coords", "positions") if k in arrays), None)
    found = {"species (z)": species, "positions (R)": positions}
    found.update({energy_key: arrays.get(energy_key), forces_key: arrays.get(forces_key)})
    missing = [name for name, value in found.items() if value is None]
    if missing:
        raise ValueError(f"{path}: missing {missing}; the file has {sorted(arrays)}")
    energies, forces = arrays[energy_key].reshape(-1), arrays[forces_key]
    return [
        _structure(species, positions[f], energies[f], forces[f], where=f"{path}: frame {f}")
        for f in range(positions.shape[0])
    ]


def _load_qm9(spec: str) -> list[Data]:
    from geobasis.data.qm9 import QM9

    parts = spec.split(":")
    target = parts[1] if len(parts) > 1 else "U0"
    limit = int(parts[2]) if len(parts) > 2 else None
    dataset = QM9(cache_dir() / "qm9", target, limit)
    if getattr(dataset[0], "energy", None) is None:
        raise ValueError(f"data: {spec}: potentials train on energy targets (U0, U, H, G)")
    return list(dataset)


@dataclass
class Splits:
    """Indices of the training, validation and test structures.

    ``test`` indexes the test source: the same structures as ``train`` and ``val``, or a
    separate test file when one was given.
    """

    train: Tensor
    val: Tensor
    test: Tensor

    def to_dict(self) -> dict[str, list[int]]:
        return {"train": self.train.tolist(), "val": self.val.tolist(), "test": self.test.tolist()}

    @classmethod
    def from_dict(cls, values: dict[str, list[int]]) -> Splits:
        return cls(*(torch.tensor(values[k], dtype=torch.long) for k in ("train", "val", "test")))


def split(
    num: int,
    train_size: int | float,
    val_size: int | float,
    test_size: int | float,
    seed: int = 0,
    num_test: int | None = None,
) -> Splits:
    """Disjoint random train / validation / test indices (sizes as counts or fractions).

    With ``num_test`` (the size of a separate test set) the test indices are its first
    ``test_size`` structures (all of them for a fraction) and only train and validation are
    drawn from the ``num`` structures.
    """
    if num_test is None:
        return Splits(*random_split(num, [train_size, val_size, test_size], seed))
    train, val = random_split(num, [train_size, val_size], seed)
    count = test_size if isinstance(test_size, int) else num_test
    return Splits(train, val, torch.arange(min(count, num_test)))


def prepare(structures: list[Data], cutoff: float, dtype: torch.dtype) -> list[Data]:
    """Radius graphs within ``cutoff`` and floating fields cast to ``dtype``; energies stay
    float64 (totals of -10^4 eV would lose meV in float32; the models add their reference
    energies in float64 too)."""
    graph = RadiusGraph(cutoff)
    out = []
    for data in structures:
        data = graph(data)
        if getattr(data, "energy", None) is not None:
            data.energy = data.energy.to(torch.float64)
        for key in ("pos", "forces", "cell", "stress"):
            if getattr(data, key, None) is not None:
                data[key] = data[key].to(dtype)
        out.append(data)
    return out
