"""Datasets by name and their splits: what ``geobasis train`` and ``geobasis evaluate`` read.

A *spec* names a dataset in one string:

=====================  =================================================================
``xtb:<molecule>``     GFN2-xTB molecular dynamics generated on the spot (cached)
``qm9[:T[:N]]``        QM9 target ``T`` (default U0), first ``N`` molecules; energies only
``path.npz``           an rMD17 file (``nuclear_charges``, ``coords``, ``energies``, ``forces``)
``path.xyz``           extended XYZ (ASE): energies, forces, cell and stress when present
=====================  =================================================================

A new format is one reader in :mod:`geobasis.data.molecules` plus one branch of
:func:`load_dataset`.  Structures come back as ``torch_geometric.data.Data`` in float64
(``pos`` Å, ``energy`` eV, ``forces`` eV/Å); :func:`prepare` adds the radius graph and
casts to the model's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.data import Data

from geobasis.data.molecules import (
    RadiusGraph,
    cache_dir,
    random_split,
    read_extxyz,
    read_rmd17,
    xtb_md_dataset,
)

__all__ = ["load_dataset", "split", "prepare", "Splits"]


def load_dataset(
    spec: str, num_frames: int = 1000, seed: int = 0, progress: bool = True
) -> list[Data]:
    """The structures named by ``spec`` (see the module docstring).

    ``num_frames`` and ``seed`` are those of generated (``xtb:``) data.
    """
    if spec.startswith("xtb:"):
        return xtb_md_dataset(spec[4:], num_frames=num_frames, seed=seed, progress=progress)
    if spec.startswith("qm9"):
        return _load_qm9(spec)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"data: no such file {spec!r} (or use 'xtb:<molecule>')")
    if path.suffix == ".npz":
        return read_rmd17(path)
    if path.suffix in (".xyz", ".extxyz"):
        return read_extxyz(path)
    raise ValueError(f"data: unknown format of {spec!r}; use an rMD17 .npz or an extended .xyz")


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
