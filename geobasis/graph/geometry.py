r"""Edge geometry: vectors, lengths, triplets and angles, safe at coincident points.

Triplets and angles are those of directional message passing (Gasteiger, Groß &
Günnemann, "Directional Message Passing for Molecular Graphs", ICLR 2020).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["edge_vectors", "safe_norm", "triplets", "angle_between", "triplet_angles"]


def safe_norm(x: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    r"""Euclidean norm with a zero (not NaN) gradient at :math:`x = 0`."""
    sq = (x * x).sum(dim=dim, keepdim=keepdim)
    positive = sq > 0
    return torch.where(
        positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq)
    )


def edge_vectors(
    pos: Tensor,
    edge_index: Tensor,
    shifts: Tensor | None = None,
    cell: Tensor | None = None,
    batch: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Edge vectors :math:`\vec r_{ij} = \vec x_j - \vec x_i` (source minus target) and lengths.

    For an edge ``j -> i`` (``edge_index[0] = j``, ``edge_index[1] = i``) the vector points
    from the receiving atom :math:`i` to its neighbour :math:`j`; with periodic ``shifts``
    from :func:`radius_graph` it is :math:`\vec x_j + s \cdot \text{cell} - \vec x_i`.
    Differentiable in ``pos`` (and ``cell``), finite gradients for coincident points.

    Returns ``(vectors [E, 3], lengths [E])``.
    """
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    src, dst = edge_index
    vec = pos[src] - pos[dst]
    if shifts is not None:
        if cell is None:
            raise ValueError("shifts need the cell they refer to")
        cell = torch.as_tensor(cell, dtype=pos.dtype, device=pos.device)
        if cell.dim() == 2:
            offset = shifts.to(pos.dtype) @ cell
        else:
            graph = torch.zeros_like(dst) if batch is None else batch[dst]
            offset = torch.einsum("ei,eij->ej", shifts.to(pos.dtype), cell[graph])
        vec = vec + offset
    return vec, safe_norm(vec)


def triplets(edge_index: Tensor, num_nodes: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    r"""All two-edge paths :math:`k \to j \to i` with :math:`k \ne i` (DimeNet's triplets).

    Returns ``(idx_kj, idx_ji, (i, j, k))`` where ``idx_kj`` and ``idx_ji`` index edges
    of ``edge_index`` (``[T]`` each) and ``i, j, k`` are node indices.  Pure torch,
    linear in the number of triplets.
    """
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    src, dst = edge_index
    n = (
        int(num_nodes)
        if num_nodes is not None
        else (int(edge_index.max()) + 1 if edge_index.numel() else 0)
    )
    order = torch.argsort(dst, stable=True)  # edges grouped by their target
    counts = torch.bincount(dst, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    # for each edge j -> i, every edge k -> j (edges whose target is j)
    per_edge = counts[src]
    total = int(per_edge.sum())
    idx_ji = torch.repeat_interleave(
        torch.arange(src.numel(), device=src.device), per_edge, output_size=total
    )
    offset = torch.arange(total, device=src.device) - torch.repeat_interleave(
        torch.cumsum(per_edge, 0) - per_edge, per_edge, output_size=total
    )
    idx_kj = order[starts[src[idx_ji]] + offset]
    i, j, k = dst[idx_ji], src[idx_ji], src[idx_kj]
    keep = k != i
    idx_kj, idx_ji = idx_kj[keep], idx_ji[keep]
    return idx_kj, idx_ji, (i[keep], j[keep], k[keep])


def angle_between(a: Tensor, b: Tensor) -> Tensor:
    r"""Angle :math:`\operatorname{atan2}(|a \times b|, a \cdot b) \in [0, \pi]`.

    The atan2 form is accurate near 0 and :math:`\pi` (unlike ``acos``) and has finite
    gradients everywhere, including for zero vectors (angle 0 there).
    """
    cross = safe_norm(torch.linalg.cross(a, b, dim=-1))
    dot = (a * b).sum(-1)
    degenerate = (cross == 0) & (dot == 0)
    return torch.atan2(cross, torch.where(degenerate, torch.ones_like(dot), dot))


def triplet_angles(
    pos: Tensor, edge_index: Tensor, num_nodes: int | None = None
) -> tuple[Tensor, tuple]:
    r"""Angles at :math:`j` between :math:`\vec x_i - \vec x_j` and :math:`\vec x_k - \vec x_j`.

    Returns ``(angles [T], triplets(edge_index))``.
    """
    trip = triplets(edge_index, num_nodes if num_nodes is not None else pos.shape[0])
    i, j, k = trip[2]
    return angle_between(pos[i] - pos[j], pos[k] - pos[j]), trip
