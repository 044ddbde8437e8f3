r"""Batched Laplacian eigenpairs of the graphs in a PyG batch.

For a graph with (symmetrised, weighted) adjacency :math:`A` and degrees
:math:`D = \operatorname{diag}(A\mathbf 1)`,

.. math::

    L = D - A \quad (\text{combinatorial}), \qquad
    L_\text{sym} = I - D^{-1/2} A D^{-1/2} \quad (\text{symmetric normalised}),

and :math:`L = V \operatorname{diag}(\lambda_1 \le \dots \le \lambda_n) V^\top`.  The dense
path stacks every graph of the batch into one padded ``[B, n_max, n_max]`` tensor whose
padding rows carry a diagonal value larger than any eigenvalue, so one batched
``eigh`` returns each graph's spectrum first and the padding last; the sparse path
(large graphs) runs ARPACK's Lanczos (``scipy.sparse.linalg.eigsh``) per graph.

Eigenvectors are defined only up to sign, and inside a repeated eigenvalue only up to an
orthogonal change of basis: raw eigenvectors are therefore not a stable input for a
network.  The encodings of :mod:`geobasis.pe.encodings` deal with that (Lim et al.,
"Sign and Basis Invariant Networks for Spectral Graph Representation Learning", ICLR
2023; Huang et al., "On the Stability of Expressive Positional Encodings for Graphs",
ICLR 2024).  With ``whole_eigenspaces=True`` a truncation to ``k`` pairs that would cut
a repeated eigenvalue drops (masks) that eigenspace entirely, so basis-invariant
encodings stay exactly invariant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch_geometric.utils import to_dense_adj, to_dense_batch

__all__ = ["Eigenpairs", "laplacian_eigenpairs", "dense_laplacian", "NORMALIZATIONS"]

NORMALIZATIONS = (None, "sym")


@dataclass
class Eigenpairs:
    """Eigenpairs of every graph, padded to ``K`` per graph.

    Attributes:
        values: ``[B, K]`` eigenvalues, ascending (0 where masked).
        vectors: ``[N, K]`` eigenvector entries of each node (0 where masked).
        mask: ``[B, K]`` which pairs exist (graphs with fewer than ``K`` nodes, or a
            dropped partial eigenspace, have ``False`` there).
        batch: ``[N]`` graph of each node.
    """

    values: Tensor
    vectors: Tensor
    mask: Tensor
    batch: Tensor

    @property
    def node_mask(self) -> Tensor:
        """``[N, K]``: the pairs that exist for each node's graph."""
        return self.mask[self.batch]


def dense_laplacian(
    edge_index: Tensor,
    batch: Tensor,
    num_graphs: int,
    edge_weight: Tensor | None = None,
    normalization: str | None = "sym",
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    """``(L [B, n_max, n_max], node_mask [B, n_max])``; padding rows and columns are 0."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be None or 'sym', got {normalization!r}")
    ones = torch.ones(batch.shape[0], 1, dtype=dtype, device=batch.device)
    _, node_mask = to_dense_batch(ones, batch, batch_size=num_graphs)
    n_max = node_mask.shape[1]
    weight = None if edge_weight is None else edge_weight.to(dtype)
    if edge_index.numel():
        adjacency = to_dense_adj(edge_index, batch, weight, n_max, num_graphs).to(dtype)
    else:
        adjacency = torch.zeros(num_graphs, n_max, n_max, dtype=dtype, device=batch.device)
    adjacency = 0.5 * (adjacency + adjacency.transpose(1, 2))
    adjacency = adjacency * (1 - torch.eye(n_max, dtype=dtype, device=batch.device))
    degree = adjacency.sum(-1)
    if normalization is None:
        laplacian = torch.diag_embed(degree) - adjacency
    else:
        inv_sqrt = torch.where(degree > 0, degree.clamp_min(1e-300).rsqrt(), 0.0)
        laplacian = torch.diag_embed(node_mask.to(dtype)) - (
            inv_sqrt[:, :, None] * adjacency * inv_sqrt[:, None, :]
        )
    return laplacian, node_mask


def _check_graph(
    edge_index: Tensor, num_nodes: int, batch: Tensor, edge_weight: Tensor | None
) -> None:
    """One-line errors naming the argument for a malformed graph."""
    if edge_index.dtype not in (torch.long, torch.int32):
        raise ValueError(f"edge_index must hold integer node indices, got {edge_index.dtype}")
    if batch.shape != (num_nodes,):
        raise ValueError(f"batch must be [{num_nodes}], got {tuple(batch.shape)}")
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("batch must be sorted (nodes of one graph contiguous, as in a PyG batch)")
    if edge_index.numel() and int(edge_index.min()) < 0:
        raise ValueError(f"edge_index has a negative node index ({int(edge_index.min())})")
    if edge_index.numel() and int(edge_index.max()) >= num_nodes:
        raise ValueError(f"edge_index refers to node {int(edge_index.max())} of {num_nodes}")
    if edge_weight is None:
        return
    if edge_weight.shape != (edge_index.shape[1],):
        raise ValueError(
            f"edge_weight must be [E] = [{edge_index.shape[1]}], got {tuple(edge_weight.shape)}"
        )
    if not bool(torch.isfinite(edge_weight).all()) or bool((edge_weight < 0).any()):
        raise ValueError("edge_weight must be finite and non-negative")


def laplacian_eigenpairs(
    edge_index: Tensor,
    num_nodes: int | None = None,
    batch: Tensor | None = None,
    edge_weight: Tensor | None = None,
    normalization: str | None = "sym",
    k: int | None = None,
    method: str = "auto",
    whole_eigenspaces: bool = False,
    tol: float = 1e-6,
    dtype: torch.dtype = torch.float64,
) -> Eigenpairs:
    """The ``k`` smallest Laplacian eigenpairs of every graph (all of them when ``k`` is None).

    Args:
        edge_index: ``[2, E]`` edges (undirected graphs list both directions; the
            adjacency is symmetrised as :math:`(A + A^\\top)/2`).
        num_nodes: number of nodes (default: ``batch.shape[0]`` or ``edge_index.max()+1``).
        batch: ``[N]`` graph of each node (sorted, as in a PyG batch).
        edge_weight: ``[E]`` non-negative weights.
        normalization: ``None`` (combinatorial) or ``"sym"``.
        k: pairs per graph (padded and masked beyond a graph's size).
        method: ``"dense"``, ``"sparse"`` (needs ``k``) or ``"auto"`` (dense up to 512 nodes
            per graph).
        whole_eigenspaces: drop an eigenspace that the truncation to ``k`` would cut.
        tol: eigenvalues closer than this count as repeated.
    """
    if method not in ("auto", "dense", "sparse"):
        raise ValueError(f"method must be 'auto', 'dense' or 'sparse', got {method!r}")
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must be [2, E], got {tuple(edge_index.shape)}")
    if num_nodes is None:
        if batch is not None:
            num_nodes = batch.shape[0]
        else:
            num_nodes = int(edge_index.max()) + 1 if edge_index.numel() else 0
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long, device=edge_index.device)
    _check_graph(edge_index, num_nodes, batch, edge_weight)
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if num_nodes == 0:  # no graph at all: empty pairs, not an error deep inside
        K = k or 0
        empty = torch.zeros(0, K, dtype=dtype, device=edge_index.device)
        return Eigenpairs(empty, empty.clone(), empty.bool(), batch)
    num_graphs = int(batch.max()) + 1 if num_nodes else 0
    sizes = torch.bincount(batch, minlength=num_graphs)
    n_max = int(sizes.max()) if num_graphs else 0
    if method == "auto":
        method = "dense" if n_max <= 512 else "sparse"
    if method == "sparse" and k is None:
        raise ValueError("the sparse method computes a few eigenpairs: give k")
    K = n_max if k is None else k
    extra = 1 if whole_eigenspaces else 0  # one more pair to see whether K cuts a space
    if method == "dense":
        values, vectors, mask = _dense(
            edge_index, batch, num_graphs, edge_weight, normalization, K + extra, dtype
        )
    else:
        values, vectors, mask = _sparse(
            edge_index, batch, sizes, edge_weight, normalization, K + extra, dtype, tol
        )
    if whole_eigenspaces:
        following, exists = values[:, K:], mask[:, K:]
        values, vectors, mask = values[:, :K], vectors[:, :K], mask[:, :K]
        cut = exists & ((values - following).abs() <= tol * following.abs().clamp_min(1.0))
        mask = mask & ~cut
        values, vectors = values * mask, vectors * mask[batch]
    return Eigenpairs(values, vectors, mask, batch)


def _dense(edge_index, batch, num_graphs, edge_weight, normalization, K, dtype):
    laplacian, node_mask = dense_laplacian(
        edge_index, batch, num_graphs, edge_weight, normalization, dtype
    )
    n_max = laplacian.shape[-1]
    # padding on the diagonal above every eigenvalue (Gershgorin: <= 2 max degree)
    bound = 2 * laplacian.diagonal(dim1=1, dim2=2).abs().amax() + 3.0 if n_max else 3.0
    pad = (~node_mask).to(dtype) * bound
    values, vectors = torch.linalg.eigh(laplacian + torch.diag_embed(pad))
    take = min(K, n_max)
    values, vectors = values[:, :take], vectors[:, :, :take]
    sizes = node_mask.sum(1)
    mask = torch.arange(take, device=batch.device)[None, :] < sizes[:, None]
    node_vectors = vectors[node_mask]  # [N, take] in node order (batch is sorted)
    values = values * mask
    if take < K:  # every graph is smaller than K: pad
        values = torch.nn.functional.pad(values, (0, K - take))
        node_vectors = torch.nn.functional.pad(node_vectors, (0, K - take))
        mask = torch.nn.functional.pad(mask, (0, K - take))
    return values, node_vectors * mask[batch], mask


def _sparse(edge_index, batch, sizes, edge_weight, normalization, K, dtype, tol):
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    num_graphs = sizes.shape[0]
    want = K
    values = torch.zeros(num_graphs, want, dtype=dtype)
    vectors = torch.zeros(batch.shape[0], want, dtype=dtype)
    mask = torch.zeros(num_graphs, want, dtype=torch.bool)
    start = torch.cumsum(sizes, 0) - sizes
    src, dst = edge_index.cpu().numpy()
    weight = (
        np.ones(src.shape[0])
        if edge_weight is None
        else edge_weight.detach().cpu().double().numpy()
    )
    graph_of_edge = batch.cpu().numpy()[src]
    for g in range(num_graphs):
        n, s = int(sizes[g]), int(start[g])
        keep = graph_of_edge == g
        a = sp.coo_matrix((weight[keep], (src[keep] - s, dst[keep] - s)), shape=(n, n)).tocsr()
        a = 0.5 * (a + a.T)
        a.setdiag(0)
        degree = np.asarray(a.sum(1)).ravel()
        if normalization is None:
            lap = sp.diags(degree) - a
        else:
            inv = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1e-300)), 0.0)
            lap = sp.identity(n) - sp.diags(inv) @ a @ sp.diags(inv)
        m = min(want, n)
        if m >= n - 1:
            w, v = np.linalg.eigh(lap.toarray())
        else:
            v0 = np.ones(n) / np.sqrt(n)  # deterministic start vector
            w, v = eigsh(lap, k=m, which="SA", tol=tol * 1e-3, v0=v0)
            order = np.argsort(w)
            w, v = w[order], v[:, order]
        values[g, :m] = torch.from_numpy(w[:m])
        vectors[s : s + n, :m] = torch.from_numpy(v[:, :m])
        mask[g, :m] = True
    device = batch.device
    return values.to(device), vectors.to(device), mask.to(device)
