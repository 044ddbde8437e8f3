r"""Molecular datasets as lists of PyG ``Data``: rMD17, extended XYZ, and xTB molecular dynamics.

Every structure becomes ``Data(pos [N, 3], z [N], energy [1], forces [N, 3])`` in Å and
eV (float64), plus ``cell [1, 3, 3]``, ``pbc [1, 3]`` and ``stress [1, 3, 3]`` when
present.  Readers name the file in every error; generated data is cached atomically
(written to a temporary file, then renamed), so an interrupted run leaves no
half-written cache behind.

* :func:`read_rmd17`: the revised MD17 ``.npz`` files (Christensen & von Lilienfeld,
  "On the role of gradients for machine learning of molecular energies and forces",
  2020): keys ``nuclear_charges``, ``coords`` (Å), ``energies`` (kcal/mol), ``forces``
  (kcal/mol/Å), converted to eV with 1 kcal/mol = 0.0433641 eV.
* :func:`read_extxyz`: extended XYZ through ASE (energy, forces, stress, cell).
* :func:`xtb_md_dataset`: Langevin molecular dynamics of a named small molecule with
  GFN2-xTB (Bannwarth, Ehlert & Grimme, JCTC 2019, through ``tblite``), deterministic for
  a seed, labelled with energies and forces: the built-in dataset, no download.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from tqdm import tqdm

from geobasis.serialization import atomic_path

__all__ = [
    "KCAL_PER_MOL_IN_EV",
    "read_rmd17",
    "read_extxyz",
    "xtb_md_dataset",
    "cache_dir",
    "random_split",
    "RadiusGraph",
]

KCAL_PER_MOL_IN_EV = 0.043364104241800934  # 1 kcal/mol in eV (CODATA 2018)
_RMD17_KEYS = ("nuclear_charges", "coords", "energies", "forces")


def _species(z: np.ndarray, where: str) -> np.ndarray:
    """Atomic numbers as int64, refusing fractions and numbers outside 1..118."""
    z = np.asarray(z)
    if z.dtype.kind not in "iuf" or (z.dtype.kind == "f" and not np.all(z == np.round(z))):
        raise ValueError(f"{where}: atomic numbers must be integers, got {z.tolist()[:8]}")
    z = z.astype(np.int64)
    if z.size and (z.min() < 1 or z.max() > 118):
        raise ValueError(
            f"{where}: atomic numbers must lie in 1..118, got {sorted(set(z.tolist()))}"
        )
    return z


def _finite(name: str, value, where: str, shape: tuple | None = None) -> np.ndarray:
    """``value`` as float64, refusing NaN / inf and (with ``shape``) a wrong shape."""
    array = np.asarray(value, dtype=np.float64)
    if shape is not None and array.shape != shape:
        raise ValueError(f"{where}: {name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: {name} has non-finite values (NaN or inf)")
    return array


def _structure(
    z: np.ndarray,
    pos: np.ndarray,
    energy: float | None,
    forces: np.ndarray | None,
    cell: np.ndarray | None = None,
    pbc: np.ndarray | None = None,
    stress: np.ndarray | None = None,
    where: str = "structure",
) -> Data:
    """One checked structure (``where`` names file and frame in every error)."""
    z = _species(z, where)
    atoms = (len(z), 3)
    data = Data(pos=torch.as_tensor(_finite("positions", pos, where, atoms)), z=torch.as_tensor(z))
    if energy is not None:
        data.energy = torch.tensor([float(_finite("energy", energy, where))], dtype=torch.float64)
    if forces is not None:
        data.forces = torch.as_tensor(_finite("forces", forces, where, atoms))
    if cell is not None:
        cell = _finite("cell", np.reshape(cell, (3, 3)), where)
        data.cell = torch.as_tensor(cell).reshape(1, 3, 3)
        data.pbc = torch.as_tensor(np.asarray(pbc, dtype=bool)).reshape(1, 3)
    if stress is not None:
        stress = _finite("stress", np.reshape(stress, (3, 3)), where)
        data.stress = torch.as_tensor(stress).reshape(1, 3, 3)
    return data


def read_rmd17(path: str | os.PathLike) -> list[Data]:
    """Read an rMD17 ``.npz`` file (energies and forces converted to eV, eV/Å)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in _RMD17_KEYS if k in archive.files}
            present = archive.files
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise ValueError(
            f"{path}: cannot read the .npz file (corrupted, truncated or holding objects?): {error}"
        ) from error
    missing = [k for k in _RMD17_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path}: not an rMD17 file, missing keys {missing} (has {present})")
    z = arrays["nuclear_charges"]
    coords, energies, forces = arrays["coords"], arrays["energies"], arrays["forces"]
    frames = coords.shape[0]
    if coords.shape != (frames, len(z), 3) or forces.shape != coords.shape:
        raise ValueError(
            f"{path}: inconsistent shapes: coords {coords.shape}, forces {forces.shape}, "
            f"{len(z)} atoms"
        )
    if energies.shape[0] != frames:
        raise ValueError(f"{path}: {energies.shape[0]} energies for {frames} frames")
    return [
        _structure(
            z,
            coords[f],
            energies[f] * KCAL_PER_MOL_IN_EV,
            forces[f] * KCAL_PER_MOL_IN_EV,
            where=f"{path}: frame {f}",
        )
        for f in range(frames)
    ]


def read_extxyz(path: str | os.PathLike, index: str = ":") -> list[Data]:
    """Read an extended XYZ file with ASE (energy, forces, stress and cell when present)."""
    return read_ase(path, index)


def read_ase(
    path: str | os.PathLike,
    index: str = ":",
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
) -> list[Data]:
    """Read any file ASE reads (extended XYZ, ASE ``.db``, ``.traj``, ...): energies in eV,
    forces in eV/Å, stress and cell when present.

    The keys name where the labels are stored (``atoms.info[energy_key]``,
    ``atoms.arrays[forces_key]``, ``atoms.info[stress_key]``); by default the calculator's
    results, then ``info["energy"]`` / ``arrays["forces"]`` / ``info["stress"]``.
    """
    from ase.io import read

    path = Path(path)
    try:
        images = _ase_db_images(path) if path.suffix == ".db" else read(path, index=index)
    except Exception as error:  # ASE raises many kinds on a bad file
        raise ValueError(f"{path}: cannot read with ASE: {error}") from error
    images = images if isinstance(images, list) else [images]
    keys = (energy_key, forces_key, stress_key)
    return [
        _ase_structure(atoms, f"{path}: structure {n}", *keys) for n, atoms in enumerate(images)
    ]


def _ase_db_images(path: Path) -> list:
    """The rows of an ASE database as Atoms, their key-value pairs in ``info`` and their
    per-atom ``data`` arrays in ``arrays`` (``ase.io.read`` keeps neither)."""
    from ase.db import connect

    images = []
    for row in connect(path).select():
        atoms = row.toatoms()
        atoms.info.update(row.key_value_pairs)
        for key, value in row.data.items():
            value = np.asarray(value)
            if value.shape[:1] == (len(atoms),):
                atoms.arrays[key] = value
            else:
                atoms.info[key] = value
        images.append(atoms)
    return images


def _ase_structure(atoms, where: str, energy_key, forces_key, stress_key) -> Data:
    results = atoms.calc.results if atoms.calc is not None else {}
    energy = _label(atoms.info, energy_key, results, "energy", where, ("Energy",))
    forces = _label(atoms.arrays, forces_key, results, "forces", where)
    stress = _label(atoms.info, stress_key, results, "stress", where)
    if energy is None:
        raise ValueError(f"{where}: no energy (set energy_key / --energy-key to its name)")
    if stress is not None and np.size(stress) == 6:  # Voigt -> full
        from ase.stress import voigt_6_to_full_3x3_stress

        stress = voigt_6_to_full_3x3_stress(stress)
    periodic = bool(np.any(atoms.pbc))
    cell = atoms.cell.array if periodic else None
    pbc = atoms.pbc if periodic else None
    return _structure(atoms.numbers, atoms.positions, energy, forces, cell, pbc, stress, where)


def _label(store: dict, key: str | None, results: dict, default: str, where: str, aliases=()):
    """A label by its key (an error naming the key and what exists when it is missing), or
    the calculator's result / the default names when no key is given."""
    if key is not None:
        if key not in store and key not in results:
            raise ValueError(
                f"{where}: no {default} under the key {key!r}; found {sorted(store)}"
                + (f" and calculator results {sorted(results)}" if results else "")
            )
        return store.get(key, results.get(key))
    if default in results:
        return results[default]
    for name in (default, *aliases):
        if name in store:
            return store[name]
    return None


def cache_dir() -> Path:
    """``$GEOBASIS_CACHE``, else ``$XDG_CACHE_HOME/geobasis``, else ``~/.cache/geobasis``."""
    if os.environ.get("GEOBASIS_CACHE"):
        return Path(os.environ["GEOBASIS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "geobasis"


def _atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        np.savez(file, **arrays)


def xtb_md_dataset(
    molecule: str = "ethanol",
    num_frames: int = 1000,
    temperature: float = 500.0,
    timestep_fs: float = 0.5,
    stride: int = 10,
    seed: int = 0,
    cache: bool = True,
    progress: bool = True,
) -> list[Data]:
    """Langevin MD of ``molecule`` with GFN2-xTB, every ``stride``-th step labelled.

    Args:
        molecule: a name known to ``ase.build.molecule`` (``"ethanol"`` maps to
            ``CH3CH2OH``; e.g. ``"CH4"``, ``"H2O"``, ``"C6H6"``).
        num_frames: frames returned, after an equilibration of ``20 * stride`` steps.
        temperature: thermostat temperature in K (friction 0.02 / fs).
        timestep_fs: integration step in fs.
        stride: MD steps between frames (decorrelation).
        seed: initial velocities and Langevin noise; equal seeds give equal data.
        cache: read/write ``cache_dir()/xtb_<molecule>_<hash>.npz`` (atomic writes).
    """
    key = f"{molecule}-{num_frames}-{temperature}-{timestep_fs}-{stride}-{seed}"
    name = f"xtb_{molecule}_{hashlib.sha1(key.encode()).hexdigest()[:10]}.npz"
    path = cache_dir() / name
    if cache and path.exists():
        try:
            return _read_cached(path)
        except ValueError:
            path.unlink(missing_ok=True)  # a damaged cache is regenerated
    z, coords, energies, forces = _run_xtb_md_single_threaded(
        molecule, num_frames, temperature, timestep_fs, stride, seed, progress
    )
    if cache:
        _atomic_save_npz(
            path, nuclear_charges=z, coords=coords, energies_ev=energies, forces_ev=forces
        )
    return [_structure(z, coords[f], energies[f], forces[f]) for f in range(num_frames)]


def _read_cached(path: Path) -> list[Data]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            z, coords = archive["nuclear_charges"], archive["coords"]
            energies, forces = archive["energies_ev"], archive["forces_ev"]
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as error:
        raise ValueError(f"{path}: damaged cache file: {error}") from error
    return [_structure(z, coords[f], energies[f], forces[f]) for f in range(len(energies))]


def _run_xtb_md_single_threaded(*args) -> tuple[np.ndarray, ...]:
    """Run :func:`_run_xtb_md` in a child process with one OpenMP thread: threaded
    reductions in xTB differ in the last bits from run to run, and MD amplifies them, so
    only a single-threaded run is reproducible bit for bit."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "md.npz"
        code = (
            "import sys, numpy as np; from geobasis.data.molecules import _run_xtb_md; "
            f"r = _run_xtb_md(*{args!r}); "
            f"np.savez({str(target)!r}, z=r[0], coords=r[1], energies=r[2], forces=r[3])"
        )
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            stdout=subprocess.PIPE,
            stderr=None if args[-1] else subprocess.PIPE,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"xTB molecular dynamics failed:\n{result.stderr}")
        with np.load(target) as archive:
            return tuple(archive[k] for k in ("z", "coords", "energies", "forces"))


def _run_xtb_md(molecule, num_frames, temperature, timestep_fs, stride, seed, progress):
    from ase import units
    from ase.build import molecule as build_molecule
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from tblite.ase import TBLite

    atoms = build_molecule("CH3CH2OH" if molecule == "ethanol" else molecule)
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    rng = np.random.RandomState(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dynamics = Langevin(
        atoms,
        timestep_fs * units.fs,
        temperature_K=temperature,
        friction=0.02 / units.fs,
        fixcm=False,
        rng=rng,
    )
    dynamics.run(20 * stride)  # equilibrate
    coords, energies, forces = [], [], []
    for _ in tqdm(range(num_frames), desc=f"xTB MD {molecule}", disable=not progress):
        dynamics.run(stride)
        coords.append(atoms.positions.copy())
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces().copy())
    return atoms.numbers.copy(), np.stack(coords), np.array(energies), np.stack(forces)


def random_split(num: int, sizes: Sequence[int | float], seed: int = 0) -> list[Tensor]:
    """Disjoint random index sets of the given sizes (ints, or fractions of ``num``)."""
    counts = [int(round(s * num)) if isinstance(s, float) else int(s) for s in sizes]
    if sum(counts) > num or any(c < 0 for c in counts):
        raise ValueError(f"split sizes {counts} do not fit {num} structures")
    order = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    out, start = [], 0
    for count in counts:
        out.append(order[start : start + count].sort().values)
        start += count
    return out


class RadiusGraph:
    """PyG-style transform: add ``edge_index`` (and periodic ``shifts``) within ``cutoff``."""

    def __init__(self, cutoff: float) -> None:
        self.cutoff = float(cutoff)

    def __call__(self, data: Data) -> Data:
        from geobasis.graph import radius_graph

        data = data.clone()
        cell = getattr(data, "cell", None)
        if cell is not None:
            data.edge_index, data.shifts = radius_graph(
                data.pos,
                self.cutoff,
                cell=cell.reshape(-1, 3, 3)[0],
                pbc=getattr(data, "pbc", None),
            )
        else:
            data.edge_index = radius_graph(data.pos, self.cutoff)
        return data

    def __repr__(self) -> str:
        return f"RadiusGraph(cutoff={self.cutoff})"
