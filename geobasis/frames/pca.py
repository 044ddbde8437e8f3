r"""PCA frames: per graph, the finite set of orthonormal frames built from the covariance of
its points, such that the *set* moves with the points.

For a graph with points :math:`x_i` (optionally weighted by :math:`w_i`, e.g. masses),

.. math::

    c = \frac{\sum_i w_i x_i}{\sum_i w_i}, \qquad
    \Sigma = \frac{\sum_i w_i (x_i - c)(x_i - c)^\top}{\sum_i w_i}
    = V \operatorname{diag}(\lambda_1 \ge \dots \ge \lambda_d) V^\top .

Under :math:`x \mapsto Qx + t` (:math:`Q \in O(d)`) the eigenvectors become :math:`Qv_k`
up to sign, so the frame set :math:`\mathcal F(X) = \{V S : S = \operatorname{diag}(\pm
1)\}` satisfies :math:`\mathcal F(QX + t) = Q\,\mathcal F(X)` (Puny et al., "Frame
Averaging for Invariant and Equivariant Network Design", ICLR 2022).  ``group="O3"``
keeps all :math:`2^d` sign choices; ``group="SO3"`` the :math:`2^{d-1}` with
:math:`\det(VS) = +1` (equivariant under rotations only).  A frame :math:`R` (columns =
axes) gives canonical coordinates :math:`R^\top (x_i - c)`.

**Degenerate spectra.**  When eigenvalues coincide (relative gap ``<= tol``: benzene,
regular polygons and polyhedra, methane, lines, single atoms) the eigenvectors inside
the repeated block are arbitrary and the sign frames above stop being equivariant.  The
block is then spanned by frames built from the points themselves, which *are*
equivariant as a set:

* a repeated pair with a distinct third axis :math:`n` (3-D), or the whole plane (2-D):
  every point whose projection :math:`p_j` onto the block has the largest norm (within
  ``tol``) gives the axes :math:`\hat p_j,\ \pm n \times \hat p_j` (2-D: :math:`\pm
  \hat p_j^\perp`), with :math:`\pm n`;
* three equal eigenvalues (3-D): every point of the outermost shell gives
  :math:`e_1 = \hat r_j`; every point of the outermost shell perpendicular to
  :math:`e_1` gives :math:`e_2`; :math:`e_3 = \pm e_1 \times e_2`;
* a block in which the points have no extent (collinear points, a single point; relative
  extent below ``extent_tol``) keeps the sign frames of the arbitrary basis: canonical
  coordinates do not depend on that basis, and the sign average removes the components
  of vector outputs that the symmetry forbids.

Averaging over these frames is exactly invariant / equivariant for every input.  The
number of frames of a degenerate graph is the number of points in the shells times 4
(O(3)) or 2 (SO(3)); it is reported in :attr:`Frames.count`.  Frames, like any
canonicalisation, are discontinuous where the case changes (Dym et al., "Equivariant
Frames and the Impossibility of Continuous Canonicalization", ICML 2024).

Derivatives flow through the centre, the eigenvectors (with the block-safe backward of
:func:`geobasis.frames.symmetric_eigh`) and the point directions, so forces obtained by
autograd through a frame average are the exact gradient of the averaged energy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from geobasis.frames.eigh import eigenvalue_blocks, symmetric_eigh

__all__ = ["Frames", "pca_frames", "GROUPS", "default_tolerances"]

#: accepted ``group`` names -> (proper rotations only, dimension or None for any)
GROUPS = {
    "O3": (False, 3),
    "SO3": (True, 3),
    "O2": (False, 2),
    "SO2": (True, 2),
    "O": (False, None),
    "SO": (True, None),
}


def default_tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """``(tol, extent_tol)``: relative eigengap / shell tolerance and relative extent below
    which a block counts as empty; looser in single precision."""
    if dtype == torch.float64:
        return 1e-5, 1e-6
    return 1e-2, 1e-3


@dataclass
class Frames:
    """A batch of frame sets; frames of one graph are contiguous.

    Attributes:
        rotations: ``[T, d, d]`` orthogonal frames, columns are the axes.
        graph: ``[T]`` graph of each frame (sorted).
        weight: ``[T]`` averaging weight, ``1 / count[graph]``.
        count: ``[B]`` frames per graph.
        center: ``[B, d]`` (weighted) centroid.
        eigenvalues: ``[B, d]`` covariance eigenvalues, descending.
        degenerate: ``[B]`` some eigenvalues coincide within ``tol``.
    """

    rotations: Tensor
    graph: Tensor
    weight: Tensor
    count: Tensor
    center: Tensor
    eigenvalues: Tensor
    degenerate: Tensor

    def __len__(self) -> int:
        return self.rotations.shape[0]

    @property
    def num_graphs(self) -> int:
        return self.center.shape[0]

    def sample(self, generator: torch.Generator | None = None) -> Frames:
        """One frame per graph drawn uniformly from its set (stochastic frame averaging,
        Duval et al., "FAENet", ICML 2023); weights become 1."""
        count = self.count
        first = torch.cumsum(count, 0) - count
        u = torch.rand(count.shape[0], generator=generator, dtype=torch.float64)
        offset = (u.to(count.device) * count).long()
        pick = first + torch.minimum(offset, count - 1)
        ones = torch.ones_like(count)
        return replace(
            self,
            rotations=self.rotations[pick],
            graph=self.graph[pick],
            weight=torch.ones_like(self.weight[pick]),
            count=ones,
        )

    def canonicalize(self, pos: Tensor, batch: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Canonical coordinates :math:`R_t^\top (x_i - c)` of every node in every frame of its
        graph: ``(canonical [M, d], node [M])`` where ``node`` indexes ``pos`` and the
        replicas of each frame are contiguous (see :meth:`replicas`)."""
        node, frame = self.replicas(_batch_or_zeros(batch, pos))
        return self.canonical_positions(pos, node, frame), node

    def canonical_positions(self, pos: Tensor, node: Tensor, frame: Tensor) -> Tensor:
        """``[M, d]`` canonical coordinates of the replicas ``(node, frame)``."""
        shifted = pos[node] - self.center[self.graph[frame]]
        return torch.einsum("mi,mij->mj", shifted, self.rotations[frame])

    def replicas(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        """``(node [M], frame [M])``: each frame's copy of every node of its graph."""
        return expand_groups(batch, self.graph, self.num_graphs)


def expand_groups(member_group: Tensor, item_group: Tensor, num_groups: int):
    """For items each belonging to a group, list every member of that group.

    Returns ``(member [M], item [M])``: item ``t``'s copies of all members ``i`` with
    ``member_group[i] == item_group[t]``, members in ascending index order, items
    contiguous.  No Python loop.
    """
    order = torch.argsort(member_group, stable=True)
    counts = torch.bincount(member_group, minlength=num_groups)
    start = torch.cumsum(counts, 0) - counts
    sizes = counts[item_group]
    item = torch.repeat_interleave(torch.arange(item_group.shape[0], device=sizes.device), sizes)
    offset = torch.arange(item.shape[0], device=sizes.device) - (
        torch.cumsum(sizes, 0) - sizes
    ).repeat_interleave(sizes)
    member = order[start[item_group][item] + offset]
    return member, item


def _batch_or_zeros(batch: Tensor | None, pos: Tensor) -> Tensor:
    if batch is None:
        return torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    return batch


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)


def _sign_table(dim: int, like: Tensor) -> Tensor:
    return torch.tensor(
        list(itertools.product((1.0, -1.0), repeat=dim)), dtype=like.dtype, device=like.device
    )


def _checked_inputs(
    pos: Tensor,
    batch: Tensor | None,
    group: str,
    dim: int | None,
    weights: Tensor | None,
    num_graphs: int | None,
) -> tuple[bool, Tensor, int, Tensor]:
    """Validate the arguments of :func:`pca_frames`; returns ``(proper, batch, num_graphs,
    weights)`` with the defaults filled in."""
    if pos.ndim != 2 or pos.shape[1] not in (2, 3):
        raise ValueError(f"pos must be [N, 2] or [N, 3], got {tuple(pos.shape)}")
    d = pos.shape[1]
    if dim is not None and dim != d:
        raise ValueError(f"dim={dim} but pos has {d} coordinates per point")
    if group not in GROUPS:
        raise ValueError(f"group must be one of {list(GROUPS)}, got {group!r}")
    proper, group_dim = GROUPS[group]
    if group_dim == 3 and d == 2:  # "O3"/"SO3" with dim=2: the same group of the plane
        group_dim = 2
    if group_dim is not None and group_dim != d:
        raise ValueError(
            f"group {group!r} acts in {group_dim}-D but pos is {d}-D; use "
            f"{'SO' if proper else 'O'}{d}"
        )
    if not pos.is_floating_point():
        raise TypeError(f"pos must be floating point, got {pos.dtype}")
    if not bool(torch.isfinite(pos).all()):
        raise ValueError("pos has non-finite values (NaN or inf): no frame is defined")
    batch = _batch_or_zeros(batch, pos)
    if batch.shape != (pos.shape[0],):
        raise ValueError(f"batch must be [N] = [{pos.shape[0]}], got {tuple(batch.shape)}")
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if batch.numel() else 0
    if weights is None:
        weights = torch.ones_like(pos[:, 0])
    elif weights.shape != (pos.shape[0],) or bool((weights < 0).any()):
        raise ValueError(f"weights must be [N] = [{pos.shape[0]}] and non-negative")
    weights = weights.to(pos.dtype)
    return proper, batch, num_graphs, weights


def pca_frames(
    pos: Tensor,
    batch: Tensor | None = None,
    group: str = "O3",
    dim: int | None = None,
    weights: Tensor | None = None,
    num_graphs: int | None = None,
    tol: float | None = None,
    extent_tol: float | None = None,
) -> Frames:
    """Frame sets of every graph in a batch (see the module docstring for the math).

    Args:
        pos: ``[N, d]`` points, ``d`` = 2 or 3.
        batch: ``[N]`` graph index (default: one graph).
        group: ``"O3"`` / ``"SO3"`` (``"O2"`` / ``"SO2"``, or ``"O"`` / ``"SO"`` for either
            dimension; with 2-D points ``"O3"`` / ``"SO3"`` mean O(2) / SO(2)).
        dim: 2 or 3; must match ``pos`` (default: ``pos.shape[1]``).
        weights: ``[N]`` non-negative point weights (masses) for centre and covariance.
        num_graphs: number of graphs (default ``batch.max() + 1``).
        tol, extent_tol: see :func:`default_tolerances`.
    """
    proper, batch, num_graphs, weights = _checked_inputs(
        pos, batch, group, dim, weights, num_graphs
    )
    d = pos.shape[1]
    default_tol, default_extent = default_tolerances(pos.dtype)
    tol = default_tol if tol is None else float(tol)
    extent_tol = default_extent if extent_tol is None else float(extent_tol)

    # centre and covariance
    tiny = torch.finfo(pos.dtype).tiny
    total = scatter(weights, batch, 0, dim_size=num_graphs, reduce="sum").clamp_min(tiny)
    center = scatter(weights[:, None] * pos, batch, 0, dim_size=num_graphs) / total[:, None]
    r = pos - center[batch]
    outer = weights[:, None, None] * r[:, :, None] * r[:, None, :]
    covariance = scatter(outer, batch, 0, dim_size=num_graphs) / total[:, None, None]
    values, vectors = symmetric_eigh(covariance, tol)
    labels = eigenvalue_blocks(values, tol).flip(-1)
    values, vectors = values.flip(-1), vectors.flip(-1)  # descending
    same = labels[:, :-1] == labels[:, 1:]  # [B, d-1]: axis k and k+1 in one block
    degenerate = same.any(-1)
    spread = values.detach().clamp_min(0).sum(-1).sqrt()  # RMS radius
    min_extent = extent_tol * spread

    pieces: list[tuple[Tensor, Tensor]] = []  # (rotations, graph)
    covered = torch.zeros(num_graphs, dtype=torch.bool, device=pos.device)
    if d == 3:
        plane_first = same[:, 0] & ~same[:, 1]  # block {0, 1}; distinct axis 2
        plane_last = same[:, 1] & ~same[:, 0]  # block {1, 2}; distinct axis 0
        sphere = same[:, 0] & same[:, 1]
        normal = torch.where(plane_first[:, None], vectors[:, :, 2], vectors[:, :, 0])
        pieces.append(
            _plane_frames(r, batch, normal, plane_first, plane_last, min_extent, tol, proper)
        )
        pieces.append(_sphere_frames(r, batch, sphere, min_extent, tol, proper, num_graphs))
    else:
        pieces.append(_circle_frames(r, batch, same[:, 0], min_extent, tol, proper))
    for _, graph in pieces:
        covered[graph] = True
    pieces.append(_sign_frames(vectors, ~covered, proper))

    rotations = torch.cat([p[0] for p in pieces])
    graph = torch.cat([p[1] for p in pieces])
    order = torch.argsort(graph, stable=True)
    rotations, graph = rotations[order], graph[order]
    count = torch.bincount(graph, minlength=num_graphs)
    weight = 1.0 / count[graph].to(pos.dtype)
    return Frames(rotations, graph, weight, count, center, values, degenerate)


def _outermost(
    norms: Tensor, group: Tensor, num: int, tol: float, allowed: Tensor, min_norm: Tensor
) -> Tensor:
    """``[M]`` members whose norm is within ``tol`` of the largest of their group, in groups
    that are ``allowed`` and whose largest norm exceeds ``min_norm`` (both ``[num]``)."""
    largest = scatter(norms.detach(), group, 0, dim_size=num, reduce="max")
    usable = allowed & (largest > min_norm)
    return usable[group] & (norms.detach() >= (1.0 - tol) * largest[group])


def _plane_frames(r, batch, normal, plane_first, plane_last, min_extent, tol, proper):
    """Frames of graphs with one repeated pair (3-D), from points off the distinct axis."""
    num = normal.shape[0]
    n = normal[batch]
    p = r - (r * n).sum(-1, keepdim=True) * n
    norms = torch.linalg.vector_norm(p, dim=-1)
    chosen = _outermost(norms, batch, num, tol, plane_first | plane_last, min_extent)
    index = chosen.nonzero()[:, 0]
    g = batch[index]
    e1 = _unit(p[index])
    nn = n[index]
    e2 = torch.linalg.cross(nn, e1)
    signs = (
        [(1.0, 1.0), (-1.0, -1.0)]
        if proper
        else [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)]
    )
    rotations, graphs = [], []
    first = plane_first[g][:, None, None]
    for s2, s3 in signs:
        a = torch.stack([e1, s2 * e2, s3 * nn], dim=-1)  # block first, normal last
        b = torch.stack([s3 * nn, e1, s2 * e2], dim=-1)  # normal first (same determinant)
        rotations.append(torch.where(first, a, b))
        graphs.append(g)
    return torch.cat(rotations), torch.cat(graphs)


def _sphere_frames(r, batch, sphere, min_extent, tol, proper, num):
    """Frames of graphs with three equal eigenvalues, from two shells of points."""
    norms = torch.linalg.vector_norm(r, dim=-1)
    chosen = _outermost(norms, batch, num, tol, sphere, min_extent)
    first = chosen.nonzero()[:, 0]
    # every (first-axis point j, other point k of the same graph) pair
    other, pair = expand_groups(batch, batch[first], num)
    j = first[pair]
    e1 = _unit(r[j])
    q = r[other] - (r[other] * e1).sum(-1, keepdim=True) * e1
    qn = torch.linalg.vector_norm(q, dim=-1)
    g = batch[j]
    everyone = torch.ones(first.shape[0], dtype=torch.bool, device=r.device)
    chosen2 = _outermost(qn, pair, first.shape[0], tol, everyone, min_extent[batch[first]])
    keep = chosen2.nonzero()[:, 0]
    e1, e2, g = e1[keep], _unit(q[keep]), g[keep]
    e3 = torch.linalg.cross(e1, e2)
    signs = (
        [(1.0, 1.0), (-1.0, -1.0)]
        if proper
        else [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)]
    )
    rotations = [torch.stack([e1, s2 * e2, s3 * e3], dim=-1) for s2, s3 in signs]
    return torch.cat(rotations), g.repeat(len(signs))


def _circle_frames(r, batch, circle, min_extent, tol, proper):
    """Frames of 2-D graphs with two equal eigenvalues, from the outermost points."""
    num = circle.shape[0]
    norms = torch.linalg.vector_norm(r, dim=-1)
    chosen = _outermost(norms, batch, num, tol, circle, min_extent)
    index = chosen.nonzero()[:, 0]
    e1 = _unit(r[index])
    e2 = torch.stack([-e1[:, 1], e1[:, 0]], dim=-1)
    signs = [1.0] if proper else [1.0, -1.0]
    rotations = [torch.stack([e1, s * e2], dim=-1) for s in signs]
    return torch.cat(rotations), batch[index].repeat(len(signs))


def _sign_frames(vectors: Tensor, use: Tensor, proper: bool):
    r"""Frames :math:`V S` for the graphs in ``use``: all sign matrices, or those with
    :math:`\det(VS) = +1`."""
    d = vectors.shape[-1]
    table = _sign_table(d, vectors)  # [2^d, d]
    allowed = use[:, None].expand(-1, table.shape[0])
    if proper:
        det = torch.linalg.det(vectors.detach()).sign()
        allowed = allowed & (table.prod(-1)[None, :] == det[:, None])
    g, s = allowed.nonzero(as_tuple=True)
    return vectors[g] * table[s][:, None, :], g
