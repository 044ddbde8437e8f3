"""What decides energy accuracy: reference energies (--e0s), float64 totals, --dtype, the
schedule following --max-minutes, stage two, and the splits (--split-file, --val-data,
the whole --test-data)."""

import json
import time

import pytest
import torch
from torch_geometric.data import Batch

from geobasis.data import isolated_atom_energies
from geobasis.nn import Potential
from geobasis.train import TrainConfig, Trainer, load_model, train
from geobasis.train.run import load_training_data
from geobasis.train.trainer import CosineSchedule

pytest.importorskip("ase")

E0 = {1: -13.587222780835477, 8: -2041.9816003861047}


def _water(count: int, seed: int, path):
    """``count`` water molecules at -2069 eV (float64 labels) written as extended XYZ."""
    from ase import Atoms
    from ase.io import write

    g = torch.Generator().manual_seed(seed)
    frames = []
    for _ in range(count):
        pos = torch.tensor([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], dtype=torch.float64)
        atoms = Atoms("OHH", positions=(pos + 0.05 * torch.randn(3, 3, generator=g)).numpy())
        atoms.info["energy"] = (
            sum(E0.values()) + E0[1] - 10.0 + 0.1 * float(torch.randn(1, generator=g))
        )
        atoms.arrays["forces"] = torch.randn(3, 3, generator=g).numpy()
        frames.append(atoms)
    write(path, frames, format="extxyz")
    return path


def _isolated(path, elements=(1, 8)):
    from ase import Atoms
    from ase.io import write

    frames = []
    for z in elements:
        atoms = Atoms(numbers=[z], positions=[[0, 0, 0]])
        atoms.info["energy"] = E0[z]
        frames.append(atoms)
    write(path, frames, format="extxyz")
    return path


TINY = {"channels": 4, "lmax": 1, "num_layers": 1, "radial_hidden": 8, "batch_size": 4,
        "epochs": 1, "threads": 1, "cutoff": 3.0}  # fmt: skip


def test_split_file_val_data_and_the_whole_test_file(tmp_path):
    data, val, test = (_water(n, s, tmp_path / f"{k}.xyz") for n, s, k in
                       ((20, 0, "data"), (5, 1, "val"), (7, 2, "test")))  # fmt: skip
    (tmp_path / "split.json").write_text(json.dumps({"train": list(range(10)), "val": [10, 11]}))
    config = TrainConfig.from_dict({**TINY, "data": str(data), "test_data": str(test),
                                    "split_file": str(tmp_path / "split.json")})  # fmt: skip
    prepared = load_training_data(config, torch.float64, progress=False)
    assert (len(prepared.train), len(prepared.val), len(prepared.test)) == (10, 2, 7)
    assert prepared.splits.train.tolist() == list(range(10))
    config.val_data, config.split_file, config.test_size, config.train_size = str(val), None, 3, 20
    prepared = load_training_data(config, torch.float64, progress=False)
    assert (len(prepared.val), len(prepared.test)) == (5, 3)  # val file whole; test_size given
    assert len(prepared.train) == 20  # no validation drawn from --data
    (tmp_path / "bad.json").write_text(json.dumps({"train": [0, 99]}))
    config.split_file = str(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="split_file: train indices .* must lie in 0..19"):
        load_training_data(config, torch.float64, progress=False)


def test_isolated_atom_reference_energies(tmp_path):
    assert isolated_atom_energies(_isolated(tmp_path / "iso.xyz")) == E0
    with pytest.raises(ValueError, match="e0s: structure 0 .* is not one atom"):
        isolated_atom_energies(_water(1, 0, tmp_path / "two.xyz"))
    batch = Batch.from_data_list(_structures(tmp_path))
    model = Potential(channels=4, lmax=1, num_layers=1)
    reference = model.fit_reference_energies(batch.z, batch.batch, batch.energy, E0)
    shift = reference[1] - E0[1]
    assert abs(float(reference[8] - E0[8] - shift)) < 1e-12  # one shift for all elements
    counts = torch.tensor([2.0, 1.0], dtype=torch.float64)  # H, O per molecule
    residual = batch.energy - (counts @ reference[[1, 8]])
    assert abs(float(residual.mean())) < 1e-9  # the shift is the mean interaction energy
    average = model.fit_reference_energies(batch.z, batch.batch, batch.energy, "average")
    assert float(average[1]) == float(average[8]) == pytest.approx(float(batch.energy.mean()) / 3)
    with pytest.raises(ValueError, match=r"e0s: no isolated-atom energy for elements \[8\]"):
        model.fit_reference_energies(batch.z, batch.batch, batch.energy, {1: -13.6})


def _structures(tmp_path):
    from geobasis.data import read

    return read(_water(6, 3, tmp_path / "w.xyz"))


def test_a_float32_model_keeps_the_resolution_of_its_energies(tmp_path):
    """Totals of -2,069 eV: float32 resolves 0.12 meV there, 2 meV at aspirin's -17,600;
    the references are kept and added in float64, so float32 and float64 agree to the
    network's own rounding (< 1e-5 eV here)."""
    from geobasis.data import prepare

    torch.manual_seed(0)
    model = Potential(channels=4, lmax=1, num_layers=1, cutoff=3.0).double()
    structures = _structures(tmp_path)
    batch = Batch.from_data_list(prepare(structures, 3.0, torch.float64))
    model.fit_reference_energies(batch.z, batch.batch, batch.energy, "fit")
    reference = model.reference_energies.clone()
    single = Potential(channels=4, lmax=1, num_layers=1, cutoff=3.0)
    single.load_state_dict(model.state_dict())
    single = single.float()
    assert single.reference_energies.dtype == torch.float64
    assert torch.equal(single.reference_energies, reference)  # never rounded to float32
    batch32 = Batch.from_data_list(prepare(structures, 3.0, torch.float32))
    assert batch32.energy.dtype == torch.float64 and batch32.pos.dtype == torch.float32
    e64 = model(batch, compute_forces=False)["energy"]
    e32 = single(batch32, compute_forces=False)["energy"]
    assert e32.dtype == torch.float64
    assert float((e32 - e64).abs().max()) < 1e-5


def test_float64_training_and_isolated_atoms_end_to_end(tmp_path):
    data = _water(16, 0, tmp_path / "data.xyz")
    iso = str(_isolated(tmp_path / "iso.xyz"))
    config = TrainConfig.from_dict({**TINY, "data": str(data), "train_size": 12, "val_size": 2,
                                    "test_size": 2, "dtype": "float64", "e0s": iso,
                                    "runs_dir": str(tmp_path), "name": "f64"})  # fmt: skip
    report = train(config, progress=False)
    assert report["test_structures"] == 2
    model = load_model(tmp_path / "f64" / "best.pt")
    assert next(model.parameters()).dtype == torch.float64
    shift = model.reference_energies[1] - E0[1]
    assert abs(float(model.reference_energies[8] - E0[8] - shift)) < 1e-9


def test_cosine_schedule_and_time_budget(tmp_path):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    schedule = CosineSchedule(optimizer, lr=1e-2, min_lr=1e-4)
    assert schedule.get_last_lr() == [pytest.approx(1e-2)]
    schedule.set(0.5)
    assert schedule.get_last_lr() == [pytest.approx(0.5 * (1e-2 + 1e-4))]
    schedule.set(1.0)
    assert schedule.get_last_lr() == [pytest.approx(1e-4)]
    model = Potential(channels=4, lmax=1, num_layers=1)
    # a 1,000-epoch run with 1 ms of budget: the time ends it, so progress follows time
    config = TrainConfig.from_dict({**TINY, "epochs": 1000, "max_minutes": 1e-5 / 6,
                                    "stage_two": 0.5})  # fmt: skip
    trainer = Trainer(model, config, scale=1.0, steps_per_epoch=10)
    assert trainer.progress() == 0.0  # the first step starts the schedule at its top
    assert trainer.loss_weights() == (config.energy_weight, config.force_weight)
    trainer.global_step = 1
    time.sleep(0.01)
    assert trainer.progress() == 1.0
    assert trainer.loss_weights() == (100.0, 10.0)  # stage two
    config.max_minutes = None
    assert trainer.progress() == pytest.approx(1 / 10_000)  # by steps without a budget
    with pytest.raises(ValueError, match="stage_two: a fraction in"):
        TrainConfig(stage_two=1.5)
    with pytest.raises(ValueError, match="dtype: must be one of"):
        TrainConfig(dtype="float16")
