import numpy as np
import pytest
import torch

from geobasis.graph import covalent_bonds


def test_methane_has_four_bonds_both_directions():
    pos = torch.tensor(
        [
            [0, 0, 0],
            [0.63, 0.63, 0.63],
            [-0.63, -0.63, 0.63],
            [-0.63, 0.63, -0.63],
            [0.63, -0.63, -0.63],
        ]
    )
    edges = covalent_bonds(pos, torch.tensor([6, 1, 1, 1, 1]))
    pairs = {tuple(sorted(e)) for e in edges.T.tolist()}
    assert pairs == {(0, 1), (0, 2), (0, 3), (0, 4)} and edges.shape[1] == 8


def test_rmd17_ethanol_bonds(shared_data):
    path = shared_data / "rmd17" / "rmd17_ethanol_train_01.npz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    arrays = np.load(path)
    pos = torch.tensor(arrays["coords"][:3], dtype=torch.float64).reshape(-1, 3)
    z = torch.tensor(arrays["nuclear_charges"]).repeat(3)
    batch = torch.arange(3).repeat_interleave(9)
    edges = covalent_bonds(pos, z, batch)
    # C2H5OH: C-C, C-O, O-H and five C-H bonds, in each of the three molecules
    assert edges.shape[1] == 3 * 2 * 8
    assert bool((batch[edges[0]] == batch[edges[1]]).all())
    elements = sorted(tuple(sorted((int(z[i]), int(z[j])))) for i, j in edges.T.tolist() if i < j)
    assert (
        elements.count((1, 6)) == 15 and elements.count((6, 6)) == 3 and elements.count((6, 8)) == 3
    )


def test_errors():
    with pytest.raises(ValueError, match="no covalent radius"):
        covalent_bonds(torch.zeros(2, 3), torch.tensor([6, 80]))
    with pytest.raises(ValueError, match="z must be"):
        covalent_bonds(torch.zeros(2, 3), torch.tensor([6]))
