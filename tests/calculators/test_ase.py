"""ASE calculator and MD: forces and stress are the derivatives ASE measures, NVE conserves."""

import numpy as np
import pytest
import torch

pytest.importorskip("ase")

from ase import Atoms  # noqa: E402
from ase.build import molecule  # noqa: E402

from geobasis.calculators import GeoBasisCalculator, run_md  # noqa: E402
from geobasis.nn import Potential  # noqa: E402
from geobasis.train import save_checkpoint  # noqa: E402


def _model():
    torch.manual_seed(0)
    return Potential(channels=8, lmax=1, num_layers=2, cutoff=4.0, radial_hidden=16)


def test_forces_and_stress_match_ase_finite_differences():
    calc = GeoBasisCalculator(model=_model())
    atoms = molecule("CH3CH2OH")
    atoms.calc = calc
    forces = atoms.get_forces()
    numeric = calc.calculate_numerical_forces(atoms, d=1e-4)
    assert np.abs(forces - numeric).max() < 1e-6
    crystal = Atoms(
        "C2O",
        positions=[[0, 0, 0], [1.2, 0.3, 0.1], [0.4, 1.6, 1.1]],
        cell=[[3.5, 0.2, 0], [0, 3.3, 0.1], [0.2, 0, 3.8]],
        pbc=True,
    )
    crystal.calc = calc
    stress = crystal.get_stress()
    assert stress.shape == (6,)
    assert np.abs(stress - calc.calculate_numerical_stress(crystal, d=1e-5)).max() < 1e-7


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = _model()
    path = tmp_path / "best.pt"
    save_checkpoint({"model": model.state_dict(), "ema": {}, "model_config": model.config}, path)
    atoms = molecule("H2O")
    a = GeoBasisCalculator(path).get_potential_energy(atoms)
    b = GeoBasisCalculator(model=model).get_potential_energy(atoms)
    assert abs(a - b) < 1e-10
    with pytest.raises(ValueError, match="exactly one"):
        GeoBasisCalculator()


def test_nve_md_conserves_energy_and_reports_drift(tmp_path):
    model = _model()
    path = tmp_path / "best.pt"
    save_checkpoint({"model": model.state_dict(), "ema": {}, "model_config": model.config}, path)
    report = run_md(
        path,
        "H2O",
        "nve",
        temperature=300,
        timestep_fs=0.25,
        time_ps=0.05,
        progress=False,
        trajectory=tmp_path / "md.traj",
    )
    assert report["steps"] == 200 and (tmp_path / "md.traj").exists()
    assert abs(report["drift_meV_per_atom_per_ps"]) < 5.0
    assert report["max_excursion_meV_per_atom"] < 1.0
    langevin = run_md(path, "H2O", "langevin", time_ps=0.01, progress=False)
    assert "drift_meV_per_atom_per_ps" not in langevin
    with pytest.raises(ValueError, match="ensemble"):
        run_md(path, "H2O", "npt", progress=False)


def test_caller_model_is_untouched_and_per_atom_energies_sum_to_the_energy():
    model = _model()
    GeoBasisCalculator(model=model)
    assert next(model.parameters()).dtype == torch.float32  # not converted in place
    atoms = molecule("CH3CH2OH")
    atoms.calc = GeoBasisCalculator(model=model)
    energies = atoms.get_potential_energies()
    assert energies.shape == (len(atoms),)
    assert abs(energies.sum() - atoms.get_potential_energy()) < 1e-10
    with torch.inference_mode():  # an ASE driver inside inference mode still gets forces
        atoms.positions = atoms.positions + 0.01
        assert np.isfinite(atoms.get_forces()).all() and np.abs(atoms.get_forces()).max() > 0


def test_elements_never_seen_in_training_are_refused_unless_allowed():
    model = _model()
    model.fit_reference_energies(torch.tensor([1, 6, 8]), torch.tensor([0, 1, 2]),
                                 torch.tensor([-13.6, -1029.0, -2040.0]))  # fmt: skip
    atoms = molecule("CF4")  # fluorine: not in the training data
    atoms.calc = GeoBasisCalculator(model=model)
    with pytest.raises(ValueError, match=r"elements \[9\] were not in this model's training"):
        atoms.get_potential_energy()
    atoms.calc = GeoBasisCalculator(model=model, allow_unseen=True)
    assert np.isfinite(atoms.get_potential_energy())
