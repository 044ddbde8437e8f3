"""Exported artifacts: the same energies, forces and stress as the Python model, loaded
in a process that never imports geobasis, and run by the ASE calculator and ``md``."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from torch_geometric.data import Data

from geobasis.calculators import GeoBasisCalculator
from geobasis.calculators.export import export_model, is_exported, read_metadata
from geobasis.nn import Potential
from geobasis.serialization import save_checkpoint
from geobasis.typing import WITH_CPU_COMPILER


def _model(dtype=torch.float64, **options):
    torch.manual_seed(0)
    options = {"lmax": 2, "num_layers": 2, "channels": 8, "cutoff": 4.0} | options
    model = Potential(**options).to(dtype).eval()
    model.reference_energies[[1, 6, 8, 14]] = torch.tensor(
        [-13.6, -1029.0, -2041.0, -100.0], dtype=model.reference_energies.dtype
    )
    model.trained_elements[[1, 6, 8, 14]] = True
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One float64 program export (tracing takes seconds: shared by the tests)."""
    model = _model()
    path = export_model(model, tmp_path_factory.mktemp("export") / "model.pt2", "program")
    return model, path, GeoBasisCalculator(path)


# The artifact is loaded with torch alone: the check is that geobasis never gets imported.
FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import torch
    path, inputs_path, out_path, aoti = sys.argv[1:5]
    if aoti == "1":
        run = torch._inductor.aoti_load_package(path)
    else:
        run = torch.export.load(path).module()
    inputs = torch.load(inputs_path)
    energy, atomic, forces, virial = run(*inputs)
    assert "geobasis" not in sys.modules, "the artifact imported geobasis"
    torch.save({"energy": energy, "atomic": atomic, "forces": forces, "virial": virial}, out_path)
    """
)


def _run_fresh(path, inputs, tmp_path, aoti=False) -> dict:
    torch.save(inputs, tmp_path / "inputs.pt")
    script = tmp_path / "run_artifact.py"
    script.write_text(FRESH_PROCESS)
    out = tmp_path / "out.pt"
    command = [sys.executable, str(script), str(path), str(tmp_path / "inputs.pt"), str(out)]
    subprocess.run([*command, "1" if aoti else "0"], check=True, cwd=tmp_path, timeout=300)
    return torch.load(out)


def _ethanol_inputs(model, dtype):
    atoms = molecule("CH3CH2OH")
    atoms.positions += np.random.RandomState(0).normal(0, 0.05, atoms.positions.shape)
    from geobasis.calculators.ase import exported_inputs

    return atoms, exported_inputs(atoms, model.cutoff, dtype)


def _reference(model, inputs):
    positions, numbers, edge_index, _, _ = inputs
    out = model(Data(pos=positions, z=numbers, edge_index=edge_index))
    return out["energy"][0].detach(), out["forces"].detach()


def test_program_export_matches_the_model_in_a_process_without_geobasis(exported, tmp_path):
    model, path, _ = exported
    _, inputs = _ethanol_inputs(model, torch.float64)
    out = _run_fresh(path, inputs, tmp_path)
    energy, forces = _reference(model, inputs)
    assert abs(float(out["energy"] - energy)) <= 1e-10 * abs(float(energy))
    assert torch.allclose(out["forces"], forces, rtol=1e-10, atol=1e-10 * forces.abs().max())
    assert torch.allclose(out["atomic"].sum(), out["energy"], rtol=1e-12)


@pytest.mark.skipif(not WITH_CPU_COMPILER, reason="AOTInductor needs a C++ compiler")
def test_aoti_float32_export_matches_the_model_in_a_process_without_geobasis(tmp_path):
    model = _model(torch.float32, lmax=1, num_layers=1)
    path = export_model(model, tmp_path / "model_aoti.pt2", "aoti", torch.float32)
    assert read_metadata(path)["format"] == "aoti" and read_metadata(path)["dtype"] == "float32"
    _, inputs = _ethanol_inputs(model, torch.float32)
    out = _run_fresh(path, inputs, tmp_path, aoti=True)
    energy, forces = _reference(model, inputs)
    assert out["forces"].dtype == torch.float32
    assert abs(float(out["energy"] - energy)) <= 1e-5 * abs(float(energy))
    assert torch.allclose(out["forces"], forces, rtol=1e-5, atol=1e-5 * forces.abs().max())
    from geobasis.calculators import run_md  # geobasis md runs the package

    report = run_md(path, "CH4", time_ps=0.01, timestep_fs=0.5, log_every=5, progress=False)
    assert report["steps"] == 20 and np.isfinite(report["drift_meV_per_atom_per_ps"])


def test_calculator_runs_the_export_with_stress_and_varying_sizes(exported):
    model, path, calculator = exported
    assert is_exported(path) and read_metadata(path)["cutoff"] == 4.0
    cells = [bulk("Si", "diamond", a=5.43, cubic=True), molecule("CH4"), molecule("C6H6")]
    cells[0].rattle(0.05, seed=1)
    cells[0].set_cell(cells[0].cell.array @ np.diag([1.0, 1.02, 0.99]), scale_atoms=True)
    for atoms in cells:  # different numbers of atoms and edges, periodic and not
        reference = atoms.copy()
        reference.calc = GeoBasisCalculator(model=model)
        atoms.calc = calculator
        assert abs(atoms.get_potential_energy() - reference.get_potential_energy()) < 1e-9
        np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), atol=1e-10)
        np.testing.assert_allclose(atoms.get_potential_energies(),
                                   reference.get_potential_energies(), atol=1e-10)  # fmt: skip
        if atoms.pbc.any():
            np.testing.assert_allclose(atoms.get_stress(), reference.get_stress(), atol=1e-10)


def test_export_handles_a_single_atom_and_no_edges(exported):
    model, _, calculator = exported
    for atoms in (molecule("H"), molecule("H2")):
        atoms.positions *= 10.0  # H2 stretched beyond the cutoff: no edges
        reference = atoms.copy()
        reference.calc = GeoBasisCalculator(model=model)
        atoms.calc = calculator
        assert abs(atoms.get_potential_energy() - reference.get_potential_energy()) < 1e-9
        np.testing.assert_allclose(atoms.get_forces(), 0.0, atol=1e-12)


def test_exported_calculator_refuses_unseen_elements_unless_allowed(exported):
    _, _, calculator = exported
    atoms = molecule("NH3")
    atoms.calc = calculator
    with pytest.raises(ValueError, match=r"elements \[7\] were not in this model's training"):
        atoms.get_potential_energy()
    calculator.allow_unseen = True
    try:
        assert np.isfinite(atoms.get_potential_energy())
    finally:
        calculator.allow_unseen = False


def test_cli_export(tmp_path, capsys):
    from geobasis.cli import main

    model = _model(lmax=1, num_layers=1)
    checkpoint = tmp_path / "model.pt"
    save_checkpoint({"model": model.state_dict(), "ema": {}, "model_config": model.config},
                    checkpoint)  # fmt: skip
    output = tmp_path / "cli.pt2"
    assert main(["export", str(checkpoint), str(output), "--format", "program",
                 "--dtype", "float32"]) == 0  # fmt: skip
    metadata = read_metadata(output)
    assert metadata["dtype"] == "float32" and metadata["trained_elements"] == [1, 6, 8, 14]
    assert "wrote" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "missing.pt"), str(output)]) == 2
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback


def test_export_errors_name_the_argument(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="format must be one of"):
        export_model(model, tmp_path / "m.pt2", "onnx")
    with pytest.raises(ValueError, match="dtype must be"):
        export_model(model, tmp_path / "m.pt2", "program", torch.float16)
    not_exported = tmp_path / "plain.pt"
    torch.save({"a": 1}, not_exported)
    assert not is_exported(not_exported)
    with pytest.raises(ValueError, match="not an exported geobasis model"):
        read_metadata(not_exported)
