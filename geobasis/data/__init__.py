"""Datasets, readers, splits and data generators.

``load_dataset(spec)`` reads any dataset the trainer takes (``datasets.py``), ``split`` and
``prepare`` turn it into training input; readers for rMD17 and extended XYZ, the GFN2-xTB
generator and :class:`QM9` (``qm9.py``); ``geobasis.data.sph``: a deterministic 1-D
compressible SPH solver (particle data for :class:`geobasis.nn.SFBCConv`).
"""

from geobasis.data.datasets import (
    Splits,
    isolated_atom_energies,
    load_dataset,
    prepare,
    read,
    read_npz,
    split,
)
from geobasis.data.molecules import (
    RadiusGraph,
    cache_dir,
    random_split,
    read_ase,
    read_extxyz,
    read_rmd17,
    xtb_md_dataset,
)
from geobasis.data.qm9 import QM9
from geobasis.data.sph import (
    SPHTrajectory,
    simulate_sph_1d,
    sph_density,
    sph_pressure_acceleration,
    wendland_c2_1d,
    wendland_c2_1d_derivative,
)

__all__ = [
    "load_dataset",
    "read",
    "read_npz",
    "isolated_atom_energies",
    "split",
    "prepare",
    "Splits",
    "RadiusGraph",
    "random_split",
    "read_rmd17",
    "read_extxyz",
    "read_ase",
    "xtb_md_dataset",
    "cache_dir",
    "QM9",
    "SPHTrajectory",
    "simulate_sph_1d",
    "sph_density",
    "sph_pressure_acceleration",
    "wendland_c2_1d",
    "wendland_c2_1d_derivative",
]
