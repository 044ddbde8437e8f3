"""Datasets by spec, splits and preparation (what `geobasis train` and `evaluate` read)."""

import numpy as np
import pytest
import torch

from geobasis.data import Splits, load_dataset, prepare, split


def _npz(path, frames=6):
    rng = np.random.default_rng(0)
    np.savez(
        path,
        nuclear_charges=np.array([8, 1, 1]),
        coords=rng.normal(size=(frames, 3, 3)),
        energies=rng.normal(size=frames) * 1000,
        forces=rng.normal(size=(frames, 3, 3)),
    )
    return path


def test_spec_names_the_reader_and_errors_name_the_spec(tmp_path):
    structures = load_dataset(str(_npz(tmp_path / "water.npz")))
    assert len(structures) == 6 and structures[0].pos.dtype == torch.float64
    with pytest.raises(FileNotFoundError, match="data: no such file"):
        load_dataset(str(tmp_path / "missing.npz"))
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="data: unknown format"):
        load_dataset(str(tmp_path / "x.csv"))


def test_split_is_disjoint_deterministic_and_takes_a_separate_test_set():
    a = split(100, 60, 0.2, 10, seed=3)
    b = split(100, 60, 0.2, 10, seed=3)
    assert [len(x) for x in (a.train, a.val, a.test)] == [60, 20, 10]
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    every = torch.cat([a.train, a.val, a.test])
    assert every.unique().numel() == 90
    assert Splits.from_dict(a.to_dict()).to_dict() == a.to_dict()
    separate = split(50, 40, 10, 30, seed=0, num_test=200)
    assert torch.equal(separate.test, torch.arange(30))
    with pytest.raises(ValueError, match="do not fit"):
        split(10, 8, 3, 0)


def test_prepare_adds_graphs_and_casts(tmp_path):
    structures = load_dataset(str(_npz(tmp_path / "water.npz")))
    prepared = prepare(structures, 5.0, torch.float32)
    assert prepared[0].edge_index.shape[1] == 6  # three atoms, all within 5 Å
    assert prepared[0].pos.dtype == prepared[0].forces.dtype == torch.float32
    assert structures[0].pos.dtype == torch.float64  # the originals are untouched


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("energies", np.nan, "energy has non-finite"),
        ("coords", np.inf, "positions has non-finite"),
        ("forces", np.nan, "forces has non-finite"),
        ("nuclear_charges", 1.5, "atomic numbers must be integers"),
        ("nuclear_charges", 200, "atomic numbers must lie in 1..118"),
    ],
)
def test_bad_values_are_refused_on_the_way_in_naming_file_and_frame(
    tmp_path, field, value, message
):
    """A NaN energy crashed deep inside lstsq; fractional species were truncated silently."""
    path = _npz(tmp_path / "bad.npz")
    with np.load(path) as archive:
        arrays = {k: archive[k].astype(np.float64 if k != "nuclear_charges" else type(value))
                  for k in archive.files}  # fmt: skip
    if field == "nuclear_charges":
        arrays[field][1] = value
    else:
        arrays[field][4] = value
    np.savez(path, **arrays)
    where = "bad.npz: frame 0" if field == "nuclear_charges" else "bad.npz: frame 4"
    with pytest.raises(ValueError, match=f"{where}: {message}"):
        load_dataset(str(path))


def test_unreadable_npz_names_the_file(tmp_path):
    (tmp_path / "noise.npz").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="noise.npz: cannot read the .npz file"):
        load_dataset(str(tmp_path / "noise.npz"))
    np.savez(tmp_path / "objects.npz", coords=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="objects.npz: cannot read the .npz file"):
        load_dataset(str(tmp_path / "objects.npz"))


def test_ase_database_and_renamed_keys(tmp_path):
    """An ASE ``.db`` was refused and labels under other names could not be read."""
    from ase.build import molecule
    from ase.db import connect

    from geobasis.data import read

    rng = np.random.default_rng(1)
    with connect(tmp_path / "set.db") as db:
        for k in range(3):
            atoms = molecule("H2O")
            atoms.positions += rng.normal(scale=0.05, size=(3, 3))
            db.write(atoms, data={"dft_forces": rng.normal(size=(3, 3))}, dft_energy=-14.0 + k)
    structures = read(tmp_path / "set.db", energy_key="dft_energy", forces_key="dft_forces")
    assert [float(s.energy) for s in structures] == [-14.0, -13.0, -12.0]
    assert structures[0].forces.shape == (3, 3)
    with pytest.raises(ValueError, match="no energy under the key 'energy_pbe'"):
        read(tmp_path / "set.db", energy_key="energy_pbe")


def test_npz_with_mapped_keys(tmp_path):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "own.npz", z=np.array([8, 1, 1]), R=rng.normal(size=(4, 3, 3)),
             E=rng.normal(size=(4, 1)), F=rng.normal(size=(4, 3, 3)))  # fmt: skip
    structures = load_dataset(str(tmp_path / "own.npz"), energy_key="E", forces_key="F")
    assert len(structures) == 4 and structures[2].forces.shape == (3, 3)
    with pytest.raises(ValueError, match=r"missing \['Energies'\]"):
        load_dataset(str(tmp_path / "own.npz"), energy_key="Energies", forces_key="F")
