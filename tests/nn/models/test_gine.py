import pytest
import torch
from torch_geometric.data import Batch, Data

from geobasis.graph import covalent_bonds
from geobasis.nn import PE_CHOICES, GINERegressor
from geobasis.pe import laplacian_eigenpairs, random_walk_pe


def _molecule(n, seed):
    g = torch.Generator().manual_seed(seed)
    # a chain with side atoms: C backbone every 1.5 A, H on alternate sides
    backbone = torch.stack([torch.arange(n) * 1.5, torch.zeros(n), torch.zeros(n)], -1)
    hydrogens = backbone + torch.tensor([0.0, 1.05, 0.0]) * (2 * (torch.arange(n) % 2) - 1)[:, None]
    pos = (
        torch.cat([backbone, hydrogens]).double()
        + 0.01 * torch.randn(2 * n, 3, generator=g).double()
    )
    z = torch.cat([torch.full((n,), 6), torch.ones(n, dtype=torch.long)])
    return pos, z


def _prepare(pos, z, k=6):
    edge_index = covalent_bonds(pos, z)
    pairs = laplacian_eigenpairs(edge_index, pos.shape[0], k=k, whole_eigenspaces=True)
    return Data(
        pos=pos,
        z=z,
        edge_index=edge_index,
        eigvals=pairs.values,
        eigvecs=pairs.vectors,
        eigmask=pairs.mask,
        rw_pe=random_walk_pe(edge_index, pos.shape[0], 16).double(),
    )


@pytest.mark.parametrize("pe", PE_CHOICES)
def test_every_encoding_runs_and_trains(pe):
    batch = Batch.from_data_list([_prepare(*_molecule(n, n)) for n in (4, 6, 5)])
    torch.manual_seed(0)
    model = GINERegressor(pe, hidden=16, num_layers=2, k=6).double()
    out = model(batch)
    assert out.shape == (3,)
    out.sum().backward()
    assert all(
        p.grad is not None for p in model.parameters() if p.requires_grad and p.grad is not None
    )


@pytest.mark.parametrize("pe", ["none", "rw", "spe"])
def test_invariant_encodings_give_permutation_invariant_predictions(pe):
    pos, z = _molecule(6, 1)
    perm = torch.randperm(12)
    model = GINERegressor(pe, hidden=16, num_layers=2, k=12).double().eval()
    a = model(Batch.from_data_list([_prepare(pos, z, k=12)]))
    b = model(Batch.from_data_list([_prepare(pos[perm], z[perm], k=12)]))
    torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_errors():
    with pytest.raises(ValueError, match="pe must be"):
        GINERegressor("laplacian")
