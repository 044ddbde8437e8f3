"""Molecular data: rMD17 and extended XYZ readers, the xTB generator, splits, graphs."""

from pathlib import Path

import numpy as np
import pytest
import torch

from geobasis.data.molecules import (
    KCAL_PER_MOL_IN_EV,
    RadiusGraph,
    random_split,
    read_extxyz,
    read_rmd17,
    xtb_md_dataset,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
RMD17 = SHARED / "rmd17" / "rmd17_ethanol_train_01.npz"
BPA = SHARED / "3bpa" / "train_300K.xyz"


@pytest.mark.skipif(not RMD17.exists(), reason="../shared/data/rmd17 is absent")
def test_rmd17_reader_converts_to_ev():
    structures = read_rmd17(RMD17)
    raw = np.load(RMD17)
    assert len(structures) == raw["coords"].shape[0] == 1000
    first = structures[0]
    assert first.z.tolist() == raw["nuclear_charges"].tolist()
    assert torch.allclose(first.pos, torch.from_numpy(raw["coords"][0]))
    assert abs(float(first.energy) - raw["energies"][0] * KCAL_PER_MOL_IN_EV) < 1e-9
    assert torch.allclose(first.forces, torch.from_numpy(raw["forces"][0]) * KCAL_PER_MOL_IN_EV)
    assert abs(KCAL_PER_MOL_IN_EV - 4184 / 96485.33212) < 1e-9  # kJ/mol per eV


@pytest.mark.skipif(not RMD17.exists(), reason="../shared/data/rmd17 is absent")
def test_corrupted_and_wrong_files_name_the_file(tmp_path):
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(RMD17.read_bytes()[:5000])
    with pytest.raises(ValueError, match="cut.npz"):
        read_rmd17(truncated)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, something=np.zeros(3))
    with pytest.raises(ValueError, match="missing keys"):
        read_rmd17(wrong)
    bad = tmp_path / "bad.xyz"
    bad.write_text("3\nnot an xyz file\nH 0 0\n")
    with pytest.raises(ValueError, match="bad.xyz"):
        read_extxyz(bad)


@pytest.mark.skipif(not BPA.exists(), reason="../shared/data/3bpa is absent")
def test_extxyz_reader():
    structures = read_extxyz(BPA)
    assert len(structures) == 500
    assert structures[0].pos.shape == (27, 3) and structures[0].forces.shape == (27, 3)
    assert structures[0].energy.shape == (1,)


def test_extxyz_with_cell_and_stress(tmp_path):
    pytest.importorskip("ase")
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    atoms = Atoms("Si2", positions=[[0, 0, 0], [1.3, 1.3, 1.3]], cell=np.eye(3) * 5.4, pbc=True)
    stress = np.array([0.1, 0.2, 0.3, 0.01, 0.02, 0.03])
    atoms.calc = SinglePointCalculator(atoms, energy=-10.0, forces=np.ones((2, 3)), stress=stress)
    write(tmp_path / "si.xyz", [atoms], format="extxyz")
    (data,) = read_extxyz(tmp_path / "si.xyz")
    assert data.cell.shape == (1, 3, 3) and bool(data.pbc.all())
    assert abs(float(data.stress[0, 0, 0]) - 0.1) < 1e-12
    assert abs(float(data.stress[0, 1, 2]) - 0.01) < 1e-12


def test_xtb_generator_is_deterministic_and_cached_atomically(tmp_path, monkeypatch):
    pytest.importorskip("tblite")
    monkeypatch.setenv("GEOBASIS_CACHE", str(tmp_path))
    a = xtb_md_dataset(num_frames=6, stride=2, seed=3, progress=False)
    files = list(tmp_path.glob("xtb_ethanol_*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp*"))
    b = xtb_md_dataset(num_frames=6, stride=2, seed=3, progress=False, cache=False)
    for x, y in zip(a, b):
        assert torch.equal(x.pos, y.pos) and torch.allclose(x.energy, y.energy)
    c = xtb_md_dataset(num_frames=6, stride=2, seed=4, progress=False, cache=False)
    assert not torch.equal(a[-1].pos, c[-1].pos)
    assert a[0].z.tolist().count(6) == 2 and a[0].forces.shape == (9, 3)
    # xTB ethanol: about -310 eV, forces of order eV/Å
    assert -320 < float(a[0].energy) < -300 and 0.01 < float(a[0].forces.abs().mean()) < 5
    files[0].write_bytes(b"damaged")  # a damaged cache is regenerated, not trusted
    again = xtb_md_dataset(num_frames=6, stride=2, seed=3, progress=False)
    assert torch.equal(again[2].pos, a[2].pos)


def test_random_split_and_radius_graph():
    train, val, test = random_split(20, [12, 0.2, 4], seed=1)
    joined = torch.cat([train, val, test])
    assert len(train) == 12 and len(val) == 4 and len(joined.unique()) == 20
    with pytest.raises(ValueError, match="do not fit"):
        random_split(10, [8, 5])
    from torch_geometric.data import Data

    data = Data(pos=torch.tensor([[0.0, 0, 0], [1, 0, 0], [5, 0, 0]]), z=torch.ones(3).long())
    graph = RadiusGraph(2.0)(data)
    assert graph.edge_index.tolist() == [[1, 0], [0, 1]]
    assert not hasattr(data, "edge_index") or data.edge_index is None


def test_qm9_from_qm9pack(tmp_path):
    from geobasis.data.qm9 import HARTREE_IN_EV, QM9, qm9pack_folder

    try:
        qm9pack_folder()
    except ImportError:
        pytest.skip("qm9pack is not installed")
    dataset = QM9(tmp_path, "U0", max_molecules=20)
    assert len(dataset) == 20
    methane = dataset[0]
    assert methane.z.tolist() == [6, 1, 1, 1, 1] and methane.pos.shape == (5, 3)
    assert abs(float(methane.energy) - (-40.47893 * HARTREE_IN_EV)) < 1e-6
    assert not list(Path(tmp_path).rglob("*.tmp"))
    again = QM9(tmp_path, "U0", max_molecules=20)  # processed once, then loaded
    assert torch.equal(again[5].pos, dataset[5].pos)
    gap = QM9(tmp_path, "gap", max_molecules=3)
    assert abs(float(gap[0].y) - 0.5048 * HARTREE_IN_EV) < 1e-6 and "energy" not in gap[0]
    with pytest.raises(ValueError, match="unknown QM9 target"):
        QM9(tmp_path, "enthalpy")
