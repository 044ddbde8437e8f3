import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import get_laplacian, to_dense_adj, to_undirected

from geobasis.pe import AddLaplacianEigenpairs, dense_laplacian, laplacian_eigenpairs


def cycle(n: int) -> torch.Tensor:
    i = torch.arange(n)
    return to_undirected(torch.stack([i, (i + 1) % n]))


def complete_bipartite(a: int, b: int) -> torch.Tensor:
    left, right = torch.meshgrid(torch.arange(a), torch.arange(a, a + b), indexing="ij")
    return to_undirected(torch.stack([left.flatten(), right.flatten()]))


def hypercube(dim: int) -> torch.Tensor:
    nodes = torch.arange(2**dim)
    edges = [torch.stack([nodes, nodes ^ (1 << k)]) for k in range(dim)]
    return torch.cat(edges, 1)


def random_graph(n: int, p: float = 0.4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    upper = torch.triu(torch.rand(n, n, generator=g) < p, 1)
    upper[torch.arange(n - 1), torch.arange(1, n)] = True  # connected
    return to_undirected(upper.nonzero().T)


def _batch(*edge_indices):
    return Batch.from_data_list(
        [Data(edge_index=e, num_nodes=int(e.max()) + 1) for e in edge_indices]
    )


@pytest.mark.parametrize("normalization", [None, "sym"])
def test_dense_laplacian_equals_pyg(normalization):
    b = _batch(random_graph(7), cycle(5))
    laplacian, mask = dense_laplacian(b.edge_index, b.batch, 2, normalization=normalization)
    index, weight = get_laplacian(b.edge_index, normalization=normalization, num_nodes=12)
    reference = to_dense_adj(index, b.batch, weight, 7, 2).double()
    torch.testing.assert_close(laplacian, reference)
    assert mask.sum().item() == 12


@pytest.mark.parametrize("normalization", [None, "sym"])
def test_batched_eigenpairs_solve_each_graph(normalization):
    graphs = [random_graph(9, seed=1), cycle(6), complete_bipartite(2, 3), hypercube(3)]
    b = _batch(*graphs)
    pairs = laplacian_eigenpairs(b.edge_index, b.num_nodes, b.batch, normalization=normalization)
    assert pairs.values.shape == (4, 9) and pairs.vectors.shape == (b.num_nodes, 9)
    start = 0
    for g, edges in enumerate(graphs):
        n = int(edges.max()) + 1
        index, weight = get_laplacian(edges, normalization=normalization, num_nodes=n)
        L = to_dense_adj(index, edge_attr=weight, max_num_nodes=n)[0].double()
        expected = np.linalg.eigvalsh(L.numpy())
        assert pairs.mask[g].sum().item() == n
        np.testing.assert_allclose(pairs.values[g, :n].numpy(), expected, atol=1e-6)  # PyG: f32
        V = pairs.vectors[start : start + n, :n]
        torch.testing.assert_close(L @ V, V * pairs.values[g, :n])
        torch.testing.assert_close(V.T @ V, torch.eye(n, dtype=torch.float64))
        assert float(pairs.vectors[start : start + n, n:].abs().sum()) == 0
        start += n


def test_sparse_lanczos_agrees_with_dense():
    b = _batch(random_graph(40, 0.1, seed=2), random_graph(30, 0.15, seed=3))
    dense = laplacian_eigenpairs(b.edge_index, b.num_nodes, b.batch, k=5, method="dense")
    sparse = laplacian_eigenpairs(b.edge_index, b.num_nodes, b.batch, k=5, method="sparse")
    torch.testing.assert_close(sparse.values, dense.values, atol=1e-8, rtol=0)
    # eigenvectors agree up to sign (these spectra are simple)
    overlap = torch.stack(
        [
            (sparse.vectors[b.batch == g] * dense.vectors[b.batch == g]).sum(0).abs()
            for g in range(2)
        ]
    )
    torch.testing.assert_close(overlap, torch.ones_like(overlap), atol=1e-6, rtol=0)


def test_truncation_can_drop_a_cut_eigenspace():
    # cycle C6 (sym): 0, 1/2, 1/2, 3/2, 3/2, 2 -> k = 2 cuts the first repeated pair
    e = cycle(6)
    kept = laplacian_eigenpairs(e, 6, k=2)
    assert kept.mask.tolist() == [[True, True]]
    whole = laplacian_eigenpairs(e, 6, k=2, whole_eigenspaces=True)
    assert whole.mask.tolist() == [[True, False]]
    assert float(whole.vectors[:, 1].abs().max()) == 0
    exact = laplacian_eigenpairs(e, 6, k=3, whole_eigenspaces=True)
    assert exact.mask.tolist() == [[True, True, True]]


def test_transform_stores_graph_level_pairs_that_batch():
    graphs = [Data(edge_index=cycle(5), num_nodes=5), Data(edge_index=cycle(3), num_nodes=3)]
    transform = AddLaplacianEigenpairs(4)
    b = Batch.from_data_list([transform(g) for g in graphs])
    assert b.eigvals.shape == (2, 4) and b.eigvecs.shape == (8, 4) and b.eigmask.shape == (2, 4)
    assert b.eigmask.tolist()[1] == [True, True, True, False]
    direct = laplacian_eigenpairs(b.edge_index, b.num_nodes, b.batch, k=4)
    torch.testing.assert_close(b.eigvals, direct.values.float())


def test_errors():
    with pytest.raises(ValueError, match="method"):
        laplacian_eigenpairs(cycle(4), method="arpack")
    with pytest.raises(ValueError, match="give k"):
        laplacian_eigenpairs(cycle(4), method="sparse")
    with pytest.raises(ValueError, match=r"\[2, E\]"):
        laplacian_eigenpairs(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="refers to node"):
        laplacian_eigenpairs(cycle(4), num_nodes=3)
    with pytest.raises(ValueError, match="non-negative"):
        laplacian_eigenpairs(cycle(4), edge_weight=-torch.ones(8))
    with pytest.raises(ValueError, match="normalization"):
        dense_laplacian(cycle(4), torch.zeros(4, dtype=torch.long), 1, normalization="rw")


def test_malformed_graphs_get_errors_naming_the_argument():
    ring = torch.tensor([[0, 1, 2], [1, 2, 0]])
    with pytest.raises(ValueError, match="negative node index"):
        laplacian_eigenpairs(torch.tensor([[0, -1], [1, 0]]), 3)
    with pytest.raises(ValueError, match=r"edge_weight must be \[E\] = \[3\]"):
        laplacian_eigenpairs(ring, 3, edge_weight=torch.ones(2))
    with pytest.raises(ValueError, match="edge_weight must be finite"):
        laplacian_eigenpairs(ring, 3, edge_weight=torch.tensor([1.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="batch must be sorted"):
        laplacian_eigenpairs(ring, 3, batch=torch.tensor([1, 0, 1]))
    empty = laplacian_eigenpairs(torch.zeros(2, 0, dtype=torch.long), 0, k=4)
    assert empty.values.shape == (0, 4) and empty.vectors.shape == (0, 4)
