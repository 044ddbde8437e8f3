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
