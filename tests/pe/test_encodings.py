import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.transforms import AddRandomWalkPE

from geobasis.pe import (
    SPE,
    LaplacianPE,
    RandomWalkPE,
    SignNet,
    laplacian_eigenpairs,
    perturbation_stability,
    random_walk_pe,
)

from .test_eigen import complete_bipartite, cycle, hypercube, random_graph

MULTIPLICITY = {
    "cycle C8": cycle(8),
    "K(3,4)": complete_bipartite(3, 4),
    "hypercube Q3": hypercube(3),
}


def _pairs(edge_index, n, k=None, edge_weight=None, whole=True):
    return laplacian_eigenpairs(
        edge_index, n, edge_weight=edge_weight, k=k, whole_eigenspaces=whole and k is not None
    )


def _encode(encoder, edge_index, vectors, values, mask):
    batch = torch.zeros(vectors.shape[0], dtype=torch.long)
    return encoder(vectors, values, mask, edge_index, batch)


def _random_basis_change(vectors, values, seed=0):
    """Rotate the eigenvectors by a random orthogonal matrix inside every eigenspace."""
    g = torch.Generator().manual_seed(seed)
    out = vectors.clone()
    lam = values[0]
    start = 0
    multiplicities = []
    while start < lam.shape[0]:
        end = start + 1
        while end < lam.shape[0] and abs(float(lam[end] - lam[start])) < 1e-8:
            end += 1
        q, _ = torch.linalg.qr(
            torch.randn(end - start, end - start, dtype=vectors.dtype, generator=g)
        )
        out[:, start:end] = vectors[:, start:end] @ q
        multiplicities.append(end - start)
        start = end
    return out, max(multiplicities)


def _spe():
    torch.manual_seed(1)
    return SPE(out_channels=6, num_filters=4, phi_hidden=8, rho_hidden=8).double()


def _signnet(k):
    torch.manual_seed(2)
    return SignNet(k, out_channels=6, hidden=8).double()


@pytest.mark.parametrize("name", list(MULTIPLICITY))
def test_spe_is_basis_invariant_on_repeated_eigenspaces_and_signnet_is_not(name):
    edge_index = MULTIPLICITY[name]
    n = int(edge_index.max()) + 1
    pairs = _pairs(edge_index, n)
    rotated, multiplicity = _random_basis_change(pairs.vectors, pairs.values)
    assert multiplicity >= 2, "the test graph must have a repeated eigenvalue"
    spe = _spe()
    a = _encode(spe, edge_index, pairs.vectors, pairs.values, pairs.mask)
    b = _encode(spe, edge_index, rotated, pairs.values, pairs.mask)
    assert float((a - b).abs().max()) < 1e-10
    signnet = _signnet(n)
    a = _encode(signnet, edge_index, pairs.vectors, pairs.values, pairs.mask)
    b = _encode(signnet, edge_index, rotated, pairs.values, pairs.mask)
    assert float((a - b).abs().max()) > 1e-6  # SPE's error is below 1e-10


def test_truncated_spe_stays_basis_invariant_when_cut_spaces_are_dropped():
    edge_index = cycle(8)  # k = 4 cuts the second repeated pair
    pairs = _pairs(edge_index, 8, k=4)
    assert pairs.mask.sum() < 4
    rotated, _ = _random_basis_change(pairs.vectors, pairs.values)
    spe = _spe()
    a = _encode(spe, edge_index, pairs.vectors, pairs.values, pairs.mask)
    b = _encode(spe, edge_index, rotated * pairs.mask.double(), pairs.values, pairs.mask)
    assert float((a - b).abs().max()) < 1e-10


def test_sign_invariance():
    edge_index = random_graph(9, seed=4)
    pairs = _pairs(edge_index, 9)
    flips = torch.tensor([1.0, -1, -1, 1, -1, 1, 1, -1, -1], dtype=torch.float64)
    flipped = pairs.vectors * flips
    for encoder in (_spe(), _signnet(9), LaplacianPE(4, sign="canonical")):
        a = _encode(encoder, edge_index, pairs.vectors, pairs.values, pairs.mask)
        b = _encode(encoder, edge_index, flipped, pairs.values, pairs.mask)
        assert float((a - b).abs().max()) < 1e-10, type(encoder).__name__
    raw = LaplacianPE(4, sign="none")
    a = _encode(raw, edge_index, pairs.vectors, pairs.values, pairs.mask)
    b = _encode(raw, edge_index, flipped, pairs.values, pairs.mask)
    assert float((a - b).abs().max()) > 0.1


def test_random_signs_only_in_training():
    edge_index = random_graph(6, seed=5)
    pairs = _pairs(edge_index, 6)
    pe = LaplacianPE(3, sign="random")
    torch.manual_seed(0)
    draws = torch.stack(
        [_encode(pe, edge_index, pairs.vectors, pairs.values, pairs.mask) for _ in range(50)]
    )
    row = pairs.vectors[:, 1:4].abs().argmax(0)  # a nonzero entry of each eigenvector
    signs = (draws[:, row, torch.arange(3)] / pairs.vectors[row, 1 + torch.arange(3)]).sign()
    assert bool((signs.std(0) > 0).all())  # both signs drawn for every eigenvector
    pe.eval()
    torch.testing.assert_close(
        _encode(pe, edge_index, pairs.vectors, pairs.values, pairs.mask), pairs.vectors[:, 1:4]
    )


@pytest.mark.parametrize("encoder_name", ["spe", "signnet"])
def test_node_permutation_equivariance(encoder_name):
    graphs = [random_graph(7, seed=6), hypercube(3)]
    batch = Batch.from_data_list([Data(edge_index=e, num_nodes=int(e.max()) + 1) for e in graphs])
    perm = torch.cat([torch.randperm(7), 7 + torch.randperm(8)])  # new node k = old perm[k]
    inverse = torch.argsort(perm)
    moved_edges = inverse[batch.edge_index]
    encoder = _spe() if encoder_name == "spe" else _signnet(7)
    pairs = laplacian_eigenpairs(batch.edge_index, 15, batch.batch, k=7, whole_eigenspaces=True)
    moved = laplacian_eigenpairs(moved_edges, 15, batch.batch, k=7, whole_eigenspaces=True)
    out = encoder(pairs.vectors, pairs.values, pairs.mask, batch.edge_index, batch.batch)
    out_moved = encoder(moved.vectors, moved.values, moved.mask, moved_edges, batch.batch)
    if encoder_name == "spe":  # exact: basis invariance covers the new eigenvectors
        torch.testing.assert_close(out_moved, out[perm], atol=1e-10, rtol=0)
    else:  # SignNet: equivariant given the same eigenvectors, permuted
        out_same = encoder(pairs.vectors[perm], pairs.values, pairs.mask, moved_edges, batch.batch)
        torch.testing.assert_close(out_same, out[perm], atol=1e-12, rtol=0)


def test_spe_is_stable_where_eigenvectors_jump():
    rows = perturbation_stability(_spe(), cycle(8), 8, (0, 1), [1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    for row in rows:
        assert row["eigenvector_change"] > 0.5, row  # O(1) jump at any eps
        assert row["encoding_change"] < 50 * row["eps"], row  # O(eps)
    lipschitz = [row["encoding_change"] / row["eps"] for row in rows]
    assert max(lipschitz) / min(lipschitz) < 3  # a constant, not a fluke of one eps
    with pytest.raises(ValueError, match="not in edge_index"):
        perturbation_stability(_spe(), cycle(8), 8, (0, 4), [1e-3])


def test_random_walk_pe_equals_pyg():
    graphs = [
        Data(edge_index=random_graph(8, seed=7), num_nodes=8),
        Data(edge_index=cycle(5), num_nodes=5),
    ]
    batch = Batch.from_data_list(graphs)
    ours = random_walk_pe(batch.edge_index, batch.num_nodes, 6, batch.batch)
    reference = torch.cat([AddRandomWalkPE(6)(g.clone()).random_walk_pe for g in graphs])
    torch.testing.assert_close(ours, reference)
    stored = RandomWalkPE(6)(batch.clone())
    torch.testing.assert_close(stored.rw_pe, ours)


def test_errors():
    with pytest.raises(ValueError, match="sign"):
        LaplacianPE(3, sign="flip")
    with pytest.raises(ValueError, match="needs 5 eigenpairs"):
        LaplacianPE(4)(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="steps"):
        random_walk_pe(cycle(4), 4, 0)
