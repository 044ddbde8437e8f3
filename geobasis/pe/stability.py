r"""Measure how far eigenvectors and a positional encoding move under a small perturbation.

For a graph, weight :math:`w_e` of one undirected edge :math:`e` is set to
:math:`1 \pm \varepsilon`; with :math:`V_\pm` the eigenvectors and
:math:`\mathrm{PE}_\pm` the encodings of the two perturbed graphs,

.. math::

    \Delta_V(\varepsilon) = \max_k \min_{s = \pm 1}
        \lVert v_{k,+} - s\, v_{k,-} \rVert_2, \qquad
    \Delta_\mathrm{PE}(\varepsilon) = \lVert \mathrm{PE}_+ - \mathrm{PE}_- \rVert_F .

On a repeated eigenvalue the two perturbations split the eigenspace in opposite orders,
so :math:`\Delta_V` stays of order one however small :math:`\varepsilon` is, while a
stable encoding (SPE) has :math:`\Delta_\mathrm{PE} \le C\varepsilon` (Huang et al., ICLR
2024, Theorem 3.1).  Used by the tests and by ``examples/pe_stability.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from geobasis.pe.eigen import laplacian_eigenpairs

__all__ = ["perturbation_stability"]


@torch.no_grad()
def perturbation_stability(
    encoder: nn.Module,
    edge_index: Tensor,
    num_nodes: int,
    edge: tuple[int, int],
    eps_values: Iterable[float],
    normalization: str | None = "sym",
) -> list[dict[str, float]]:
    """``[{"eps", "eigenvector_change", "encoding_change"}]`` for each :math:`\\varepsilon`.

    ``encoder`` is called as ``encoder(eigvecs, eigvals, eigmask, edge_index, batch)`` on
    all ``num_nodes`` eigenpairs of the graph, in the encoder's dtype.
    """
    a, b = edge
    target = ((edge_index[0] == a) & (edge_index[1] == b)) | (
        (edge_index[0] == b) & (edge_index[1] == a)
    )
    if not bool(target.any()):
        raise ValueError(f"edge {edge} is not in edge_index")
    dtype = next(encoder.parameters()).dtype
    batch = torch.zeros(num_nodes, dtype=torch.long)
    rows = []
    for eps in eps_values:
        vectors, encodings = [], []
        for sign in (1.0, -1.0):
            weight = torch.ones(edge_index.shape[1], dtype=torch.float64)
            weight[target] += sign * eps
            pairs = laplacian_eigenpairs(
                edge_index, num_nodes, edge_weight=weight, normalization=normalization
            )
            vectors.append(pairs.vectors)
            encodings.append(
                encoder(
                    pairs.vectors.to(dtype), pairs.values.to(dtype), pairs.mask, edge_index, batch
                )
            )
        plus, minus = vectors
        change = torch.minimum((plus - minus).norm(dim=0), (plus + minus).norm(dim=0)).max()
        rows.append(
            {
                "eps": float(eps),
                "eigenvector_change": float(change),
                "encoding_change": float((encodings[0] - encodings[1]).norm()),
            }
        )
    return rows
