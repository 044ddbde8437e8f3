r"""Radius graphs by a cell list, linear in the number of points, optionally periodic.

Points are binned into cubic cells of side :math:`\ge r`; each point only looks at the
27 neighbouring cells, so the work is :math:`O(N \bar k)` for :math:`\bar k` neighbours
per point and no :math:`N \times N` matrix is ever formed.  Cells are keyed per graph
(graph index, cell coordinates), sorted once, and the points of a neighbouring cell are
found with ``searchsorted``; everything is batched tensor code, with no Python loop over
points, cells or graphs.

Periodic cells (rows of ``cell`` are the lattice vectors, as in ASE) are handled by
wrapping the points into the cell, adding the periodic images that lie within
:math:`r` of the cell (as many image layers as the cell's heights require, so a small
cell sees an atom's own images), and searching the padded set.  Each edge then carries an
integer ``shift`` with :math:`\vec r_{ij} = \vec x_j + \text{shift} \cdot \text{cell} -
\vec x_i` for the original (unwrapped) positions.

Inputs of at most ``DENSE_MAX_POINTS`` points (1,024) are compared pair by pair, which
is faster than binning at that size.

On CPU, graphs of ``TREE_MIN_POINTS`` (256) points or more go through a compiled search,
one graph at a time (``backend="auto"``): open systems through SciPy's ``cKDTree`` (its
half list of pairs), periodic ones through the optional ``vesin`` package (a neighbour
list for atomistic ML) when it is installed; ``"torch"`` / ``"scipy"`` / ``"vesin"`` force
one.  The edges, shifts and their order are the same as the cell list's (tested), only
faster; the compiled searches run with ``torch.get_num_threads()`` threads where they can
(``cKDTree.query_pairs`` has one).  Inside ``torch.compile`` / ``torch.export`` the
pure-torch path is always used.

Reference: Allen & Tildesley, "Computer Simulation of Liquids" (1987), linked cell lists.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
from torch import Tensor

from geobasis._chunked import block_rows
from geobasis.typing import WITH_VESIN

__all__ = ["radius_graph"]

BACKENDS = ("auto", "torch", "scipy", "vesin")

_OFFSETS = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.long)


def _check_inputs(pos: Tensor, r: float, batch: Tensor | None) -> None:
    if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.shape[1] not in (1, 2, 3):
        raise ValueError(
            "pos must be a [N, 3] tensor (or [N, 1] / [N, 2] for 1-D / 2-D point sets), got "
            f"{getattr(pos, 'shape', type(pos))}"
        )
    if pos.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"pos must be float32 or float64, got {pos.dtype}; convert with .float()")
    if not bool(torch.isfinite(pos).all()):
        raise ValueError("pos has non-finite values (NaN or inf)")
    if not (isinstance(r, (int, float)) and math.isfinite(r) and r > 0):
        raise ValueError(f"r must be a positive finite number, got {r!r}")
    if batch is not None:
        if batch.dim() != 1 or batch.shape[0] != pos.shape[0]:
            raise ValueError(f"batch must have shape [{pos.shape[0]}], got {tuple(batch.shape)}")
        if batch.numel() and (batch.min() < 0):
            raise ValueError("batch indices must be non-negative")
    if not torch.isfinite(pos).all():
        raise ValueError("pos contains NaN or infinite values")


def _cell_pairs(
    query: Tensor, query_graph: Tensor, source: Tensor, source_graph: Tensor, r: float
) -> tuple[Tensor, Tensor]:
    """All (query index, source index) pairs of the same graph closer than ``r``."""
    device = query.device
    if query.shape[0] == 0 or source.shape[0] == 0:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return empty, empty
    num_graphs = int(max(query_graph.max(), source_graph.max())) + 1
    lower = torch.full((num_graphs, 3), math.inf, dtype=source.dtype, device=device)
    lower = lower.scatter_reduce(0, source_graph[:, None].expand(-1, 3), source, "amin")
    lower = lower.scatter_reduce(0, query_graph[:, None].expand(-1, 3), query, "amin")
    upper = torch.full((num_graphs, 3), -math.inf, dtype=source.dtype, device=device)
    upper = upper.scatter_reduce(0, source_graph[:, None].expand(-1, 3), source, "amax")
    upper = upper.scatter_reduce(0, query_graph[:, None].expand(-1, 3), query, "amax")
    extent = float((upper - lower).clamp_min(0).nan_to_num(0).max()) if num_graphs else 0.0
    # cell side >= r; coarser if the grid would not fit in an int64 key
    side = max(float(r), extent / 2.0e5)
    dims = int(extent / side) + 3
    lower = lower.nan_to_num(0.0, posinf=0.0, neginf=0.0)

    def cell_of(x: Tensor, g: Tensor) -> Tensor:
        return torch.floor((x - lower[g]) / side).long() + 1  # >= 1, so neighbours stay >= 0

    def key(c: Tensor, g: Tensor) -> Tensor:
        return ((g * dims + c[..., 0]) * dims + c[..., 1]) * dims + c[..., 2]

    src_key = key(cell_of(source, source_graph), source_graph)
    src_order = torch.argsort(src_key)
    sorted_key = src_key[src_order]
    src_sorted = source[src_order]
    q_cells = cell_of(query, query_graph)
    q_key = key(q_cells, query_graph)
    q_order = torch.argsort(q_key)  # neighbouring queries share cells: cache-friendly gathers
    q_cells, q_sorted, q_graph = q_cells[q_order], query[q_order], query_graph[q_order]
    offsets = _OFFSETS.to(device)
    found_q, found_s = [], []
    src_cols = src_sorted.t().contiguous()  # one contiguous array per coordinate
    # queries per block: cache-sized on CPU, all at once on a GPU when memory allows
    # (about 16 KiB of candidate pairs per query at molecular densities)
    block = block_rows(query.shape[0], 512, device, _QUERY_CHUNK)
    for lo in range(0, query.shape[0], block):
        hi = min(lo + block, query.shape[0])
        neigh_key = key(q_cells[lo:hi, None, :] + offsets[None], q_graph[lo:hi, None]).reshape(-1)
        start = torch.searchsorted(sorted_key, neigh_key)
        counts = torch.searchsorted(sorted_key, neigh_key, right=True) - start
        total = int(counts.sum())
        per_query = counts.view(-1, 27).sum(1)
        # candidates are grouped by query: expand queries by repetition, gather sources
        q_index = torch.arange(lo, hi, device=device).repeat_interleave(
            per_query, output_size=total
        )
        s_index = torch.repeat_interleave(
            start - torch.cumsum(counts, 0) + counts, counts, output_size=total
        )
        s_index += torch.arange(total, device=device)
        dist2 = torch.zeros(total, dtype=source.dtype, device=device)
        q_block = q_sorted[lo:hi].t()
        for d in range(3):
            diff = src_cols[d].index_select(0, s_index)
            diff -= q_block[d].repeat_interleave(per_query, output_size=total)
            dist2.addcmul_(diff, diff)
        keep = (dist2 < r * r).nonzero().squeeze(-1)
        found_q.append(q_order.index_select(0, q_index.index_select(0, keep)))
        found_s.append(src_order.index_select(0, s_index.index_select(0, keep)))
    return torch.cat(found_q), torch.cat(found_s)


_QUERY_CHUNK = 1 << 14

DENSE_MAX_POINTS = 1024
"""Below this many points all pairs are compared directly (faster than binning there)."""
KEY_SORT_MAX_PAIRS = 1 << 16
"""Half lists of up to this many pairs are put in order by one sort of their keys (above
it the sparse-matrix route is faster)."""
TREE_MIN_POINTS = 256
"""Mean points per graph from which the compiled searches (cKDTree, vesin) beat the torch
paths."""


def _dense_pairs(pos: Tensor, graph: Tensor, r: float) -> tuple[Tensor, Tensor]:
    """All (target, source) pairs of the same graph closer than ``r``, by direct comparison."""
    dist = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")
    close = (dist < r) & (graph[:, None] == graph[None, :])
    tgt, src = close.nonzero(as_tuple=True)
    return tgt, src


def _limit_neighbours(edge_index: Tensor, dist2: Tensor, num_nodes: int, k: int) -> Tensor:
    """Keep the ``k`` nearest sources of every target (ties broken by source index)."""
    src, dst = edge_index
    order = torch.argsort(src, stable=True)
    order = order[torch.argsort(dist2[order], stable=True)]
    order = order[torch.argsort(dst[order], stable=True)]
    dst_sorted = dst[order]
    counts = torch.bincount(dst_sorted, minlength=num_nodes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(dst_sorted.numel(), device=dst.device) - starts[dst_sorted]
    return order[rank < k]


def radius_graph(
    pos: Tensor,
    r: float,
    batch: Tensor | None = None,
    loop: bool = False,
    max_num_neighbors: int | None = None,
    cell: Tensor | None = None,
    pbc: Tensor | bool | None = None,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    r"""All pairs closer than ``r`` (strictly), as a PyG ``edge_index``.

    Args:
        pos: ``[N, 3]`` positions (``[N, 1]`` or ``[N, 2]`` for 1-D and 2-D point sets such
            as particle fluids: they are searched as points in a plane/line of 3-D space).
        r: cutoff radius.
        batch: ``[N]`` graph index of every point (PyG's ``batch``); pairs never cross
            graphs.
        loop: include self-edges ``i -> i`` (the zero-shift ones when periodic).
        max_num_neighbors: keep only the nearest this many sources per target.
        cell: ``[3, 3]`` or ``[B, 3, 3]`` lattice vectors (rows) for periodic systems
            (``[d, d]`` / ``[B, d, d]`` for ``d``-dimensional points).
        pbc: periodic directions, ``bool``, ``[d]`` or ``[B, d]`` (default: all
            periodic when a cell is given).
        backend: ``"auto"`` (CPU graphs of at least ``TREE_MIN_POINTS`` points: SciPy's
            ``cKDTree`` for open systems, vesin for periodic ones when it is installed;
            else torch), ``"torch"``, ``"scipy"`` (open systems) or ``"vesin"``; all give
            the same edges in the same order.

    Returns:
        ``edge_index [2, E]`` with row 0 the source :math:`j` and row 1 the target
        :math:`i` (PyG's ``source_to_target`` flow), sorted by target then source.
        With a cell: ``(edge_index, shifts)``, ``shifts [E, d]`` integer cell
        offsets such that ``pos[j] + shifts @ cell[batch[i]] - pos[i]`` is the edge vector.
    """
    _check_inputs(pos, r, batch)
    if cell is not None and not bool(torch.isfinite(torch.as_tensor(cell)).all()):
        raise ValueError("cell has non-finite values (NaN or inf)")
    if pos.shape[1] < 3:
        return _lower_dimensional_radius_graph(
            pos, r, batch, loop, max_num_neighbors, cell, pbc, backend
        )
    n = pos.shape[0]
    device = pos.device
    graph = torch.zeros(n, dtype=torch.long, device=device) if batch is None else batch.long()
    engine = _compiled_search(backend, pos, graph, cell is not None)
    if engine is not None:
        return _compiled_radius_graph(
            pos, float(r), graph, loop, max_num_neighbors, cell, pbc, engine
        )
    if cell is None:
        if pbc is not None and bool(torch.as_tensor(pbc).any()):
            raise ValueError("pbc was given without a cell; pass cell=[3, 3] or [B, 3, 3]")
        with torch.no_grad():
            if n <= DENSE_MAX_POINTS:
                tgt, src = _dense_pairs(pos.detach(), graph, float(r))
            else:
                tgt, src = _cell_pairs(pos.detach(), graph, pos.detach(), graph, float(r))
            if not loop:
                keep = tgt != src
                tgt, src = tgt[keep], src[keep]
            edge_index = torch.stack([src, tgt])
            if n <= DENSE_MAX_POINTS and max_num_neighbors is None:
                return edge_index  # nonzero() already orders by target, then source
            dist2 = ((pos[src] - pos[tgt]) ** 2).sum(-1)
            edge_index = edge_index[:, _edge_order(edge_index, dist2, n, max_num_neighbors)]
        return edge_index
    return _periodic_radius_graph(pos, float(r), graph, loop, max_num_neighbors, cell, pbc)


def _lower_dimensional_radius_graph(
    pos: Tensor,
    r: float,
    batch: Tensor | None,
    loop: bool,
    max_num_neighbors: int | None,
    cell: Tensor | None,
    pbc: Tensor | bool | None,
    backend: str,
) -> Tensor | tuple[Tensor, Tensor]:
    """1-D / 2-D points: embedded in 3-D with zeros; a ``[d, d]`` cell gets unit, never
    periodic, extra directions."""
    n, dim = pos.shape
    pos3 = torch.cat([pos, pos.new_zeros(n, 3 - dim)], dim=1)
    if cell is None:
        return radius_graph(pos3, r, batch, loop, max_num_neighbors, None, pbc, backend)
    cell = torch.as_tensor(cell, dtype=pos.dtype, device=pos.device)
    if cell.dim() not in (2, 3) or cell.shape[-2:] != (dim, dim):
        raise ValueError(
            f"cell must be [{dim}, {dim}] or [B, {dim}, {dim}] for {dim}-D points, "
            f"got {tuple(cell.shape)}"
        )
    cell3 = torch.eye(3, dtype=pos.dtype, device=pos.device).repeat(*cell.shape[:-2], 1, 1)
    cell3[..., :dim, :dim] = cell
    periodic = torch.ones(dim, dtype=torch.bool, device=pos.device) if pbc is None else pbc
    periodic = torch.as_tensor(periodic, dtype=torch.bool, device=pos.device)
    if periodic.dim() == 0:
        periodic = periodic.expand(dim)
    if periodic.shape[-1] != dim:
        raise ValueError(f"pbc must be bool, [{dim}] or [B, {dim}], got {tuple(periodic.shape)}")
    pbc3 = torch.cat([periodic, periodic.new_zeros(*periodic.shape[:-1], 3 - dim)], dim=-1)
    edge_index, shifts = radius_graph(pos3, r, batch, loop, max_num_neighbors, cell3, pbc3, backend)
    return edge_index, shifts[:, :dim]


def _edge_order(edge_index: Tensor, dist2: Tensor, n: int, k: int | None) -> Tensor:
    """Edges to keep (the ``k`` nearest per target, if ``k``), ordered by target then source."""
    keep = torch.arange(edge_index.shape[1], device=edge_index.device)
    if k is not None:
        if not (isinstance(k, int) and k >= 0):
            raise ValueError(f"max_num_neighbors must be a non-negative int, got {k!r}")
        keep = _limit_neighbours(edge_index, dist2, n, k)
    kept = edge_index[:, keep]
    return keep[torch.argsort(kept[1] * max(n, 1) + kept[0], stable=True)]


def _periodic_radius_graph(
    pos: Tensor,
    r: float,
    graph: Tensor,
    loop: bool,
    max_num_neighbors: int | None,
    cell: Tensor,
    pbc: Tensor | bool | None,
) -> tuple[Tensor, Tensor]:
    device, dtype = pos.device, pos.dtype
    num_graphs = int(graph.max()) + 1 if graph.numel() else 1
    cell = torch.as_tensor(cell, dtype=dtype, device=device)
    if cell.shape == (3, 3):
        cell = cell.expand(num_graphs, 3, 3)
    if cell.dim() != 3 or cell.shape[1:] != (3, 3) or cell.shape[0] < num_graphs:
        raise ValueError(
            f"cell must be [3, 3] or [B, 3, 3] with B = {num_graphs}, got {tuple(cell.shape)}"
        )
    if pbc is None:
        pbc = torch.ones(num_graphs, 3, dtype=torch.bool, device=device)
    pbc = torch.as_tensor(pbc, dtype=torch.bool, device=device)
    pbc = pbc.expand(num_graphs, 3) if pbc.dim() <= 1 else pbc
    if pbc.shape != (num_graphs, 3):
        raise ValueError(f"pbc must be bool, [3] or [{num_graphs}, 3], got {tuple(pbc.shape)}")
    with torch.no_grad():
        cell = cell.detach()[:num_graphs]
        det = torch.linalg.det(cell)
        if (pbc.any(-1) & (det.abs() < 1e-12)).any():
            raise ValueError("a periodic cell is singular (zero volume)")
        # graphs without any periodic direction keep Cartesian coordinates
        eye = torch.eye(3, dtype=dtype, device=device)
        basis = torch.where(pbc.any(-1)[:, None, None], cell, eye)
        inv = torch.linalg.inv(basis)
        frac = torch.einsum("ni,nij->nj", pos.detach(), inv[graph])
        wrap = torch.where(pbc[graph], torch.floor(frac), torch.zeros_like(frac))
        frac = frac - wrap
        # heights of the cell: distance between opposite faces
        cross = torch.stack(
            [
                torch.linalg.cross(cell[:, 1], cell[:, 2]),
                torch.linalg.cross(cell[:, 2], cell[:, 0]),
                torch.linalg.cross(cell[:, 0], cell[:, 1]),
            ],
            1,
        )
        heights = det.abs()[:, None] / cross.norm(dim=-1).clamp_min(1e-300)
        layers = torch.where(pbc, torch.ceil(r / heights), torch.zeros_like(heights)).long()
        reach = torch.where(pbc, r / heights, torch.zeros_like(heights))  # in fractional units
        max_layers = layers.max(0).values.tolist()
        ranges = [torch.arange(-m, m + 1, device=device) for m in max_layers]
        shifts_all = torch.stack(torch.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, 3).long()
        # image (atom, shift) candidates that land within `reach` of the unit cell
        img_frac = frac[:, None, :] + shifts_all[None].to(dtype)
        ok = (shifts_all.abs()[None] <= layers[graph][:, None, :]).all(-1)
        # (no bound in a non-periodic direction: atoms may lie outside the cell there)
        inside = (img_frac >= -reach[graph][:, None, :]) & (img_frac < 1 + reach[graph][:, None, :])
        ok &= (inside | ~pbc[graph][:, None, :]).all(-1)
        atom_idx, shift_idx = ok.nonzero(as_tuple=True)
        src_pos = torch.einsum("ni,nij->nj", img_frac[atom_idx, shift_idx], basis[graph[atom_idx]])
        tgt_pos = torch.einsum("ni,nij->nj", frac, basis[graph])
        tgt, img = _cell_pairs(tgt_pos, graph, src_pos, graph[atom_idx], r)
        src = atom_idx[img]
        shift = shifts_all[shift_idx[img]]
        if not loop:
            keep = ~((src == tgt) & (shift == 0).all(-1))
            tgt, src, shift = tgt[keep], src[keep], shift[keep]
        # shifts relative to the original, unwrapped positions
        shift = shift - wrap[src].long() + wrap[tgt].long()
        edge_index = torch.stack([src, tgt])
        vec = (
            pos.detach()[src]
            + torch.einsum("ei,eij->ej", shift.to(dtype), cell[graph[tgt]])
            - pos.detach()[tgt]
        )
        dist2 = (vec * vec).sum(-1)
        order = _periodic_edge_order(edge_index, shift, dist2, pos.shape[0], max_num_neighbors)
    return edge_index[:, order], shift[order]


def _periodic_edge_order(
    edge_index: Tensor, shift: Tensor, dist2: Tensor, n: int, k: int | None
) -> Tensor:
    """:func:`_edge_order` with the images of one pair ordered by their shift (so that any
    neighbour-list backend gives the same order)."""
    code = shift - shift.min(0).values if shift.numel() else shift
    span = code.max(0).values + 1 if shift.numel() else torch.ones(3, dtype=torch.long)
    first = torch.argsort((code[:, 0] * span[1] + code[:, 1]) * span[2] + code[:, 2], stable=True)
    return first[_edge_order(edge_index[:, first], dist2[first], n, k)]


# ------------------------------------------------------------- cKDTree and vesin
def _compiled_search(backend: str, pos: Tensor, graph: Tensor, periodic: bool) -> str | None:
    """``"scipy"``, ``"vesin"`` or ``None`` (the torch paths) for this call (see
    ``radius_graph``'s ``backend``)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch" or torch.compiler.is_compiling():
        return None
    if backend != "auto" and pos.device.type != "cpu":
        raise ValueError(f"backend={backend!r} runs on CPU tensors, got pos on {pos.device}")
    if backend == "vesin":
        if not WITH_VESIN:
            raise ImportError("backend='vesin' needs the vesin package: pip install vesin")
        return "vesin"
    if backend == "scipy":
        if periodic:
            raise ValueError("backend='scipy' searches open systems only; with a cell use "
                             "backend='vesin' (pip install vesin) or 'torch'")  # fmt: skip
        return "scipy"
    num_graphs = int(graph.max()) + 1 if graph.numel() else 1
    if pos.device.type != "cpu" or pos.shape[0] < TREE_MIN_POINTS * num_graphs:
        return None
    if not periodic:
        return "scipy"
    return "vesin" if WITH_VESIN else None


def _compiled_radius_graph(
    pos: Tensor,
    r: float,
    graph: Tensor,
    loop: bool,
    max_num_neighbors: int | None,
    cell: Tensor | None,
    pbc: Tensor | bool | None,
    engine: str,
) -> Tensor | tuple[Tensor, Tensor]:
    """The radius graph through cKDTree or vesin (``engine``), one graph at a time (points
    need not be sorted by graph); same edges, shifts and order as the torch paths."""
    n = pos.shape[0]
    num_graphs = int(graph.max()) + 1 if graph.numel() else 1
    cells, periodic = _vesin_cells(cell, pbc, num_graphs)
    src, tgt, shift = _compiled_pairs(
        pos, r, graph, num_graphs, cells, periodic, cell is not None, engine
    )
    if cell is None and max_num_neighbors is None:
        return _both_ways_sorted(src, tgt, n, loop)
    if cell is None:  # open systems: vesin's half list, mirrored
        src, tgt = torch.cat([src, tgt]), torch.cat([tgt, src])
    if loop:
        every = torch.arange(n)
        src, tgt = torch.cat([src, every]), torch.cat([tgt, every])
        shift = None if shift is None else torch.cat([shift, shift.new_zeros(n, 3)])
    edge_index = torch.stack([src, tgt])
    if cell is None:
        dist2 = ((pos.detach()[src] - pos.detach()[tgt]) ** 2).sum(-1)
        return edge_index[:, _edge_order(edge_index, dist2, n, max_num_neighbors)]
    lattice = torch.as_tensor(cells, dtype=pos.dtype)
    vec = pos.detach()[src] + torch.einsum("ei,eij->ej", shift.to(pos.dtype),
                                           lattice[graph[tgt]]) - pos.detach()[tgt]  # fmt: skip
    order = _periodic_edge_order(edge_index, shift, (vec * vec).sum(-1), n, max_num_neighbors)
    return edge_index[:, order], shift[order]


def _compiled_pairs(
    pos: Tensor,
    r: float,
    graph: Tensor,
    num_graphs: int,
    cells,
    periodic,
    with_shifts: bool,
    engine: str,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(source, target, shift or None)`` of every pair closer than ``r`` (no loops),
    graph by graph, in the engine's order: both directions with shifts (periodic), each
    pair once without (open systems)."""
    points = pos.detach().to(torch.float64).numpy()
    # open systems: each pair once (half the search); the caller adds the other direction
    search = _KDTreeHalfPairs(r) if engine == "scipy" else _vesin_search(r, with_shifts)
    sources, targets, shifts = [], [], []
    for g in range(num_graphs):
        members = (graph == g).nonzero().flatten() if num_graphs > 1 else None
        part = points if members is None else points[members.numpy()]
        if part.shape[0] == 0:
            continue
        if with_shifts:
            i, j, s, d = search.compute(part, cells[g], periodic[g], quantities="ijSd")
            close = torch.as_tensor(d < r)
            shifts.append(torch.as_tensor(s)[close].long())
        else:  # vesin keeps distances < r itself; each pair once
            i, j = search.compute(part, cells[g], periodic[g], quantities="ij")
            close = slice(None)
        i = torch.as_tensor(i.astype("int64"))[close]
        j = torch.as_tensor(j.astype("int64"))[close]
        targets.append(i if members is None else members[i])
        sources.append(j if members is None else members[j])

    def joined(parts: list[Tensor]) -> Tensor:
        return parts[0] if len(parts) == 1 else torch.cat(parts) if parts else graph.new_zeros(0)

    src, tgt = joined(sources), joined(targets)
    shift = (torch.cat(shifts) if shifts else graph.new_zeros(0, 3)) if with_shifts else None
    return src, tgt, shift


class _KDTreeHalfPairs:
    """cKDTree's pairs at distance below ``r`` (float64), each once, with vesin's
    ``compute`` signature for open systems."""

    def __init__(self, r: float) -> None:
        import numpy as np

        self.r = float(np.nextafter(r, 0.0))  # query_pairs keeps distances <= r: make it <

    def compute(self, points, box, periodic, quantities: str = "ij"):
        from scipy.spatial import cKDTree

        pairs = cKDTree(points).query_pairs(self.r, output_type="ndarray")
        return pairs[:, 0], pairs[:, 1]


def _vesin_search(r: float, full_list: bool):
    """vesin's ``NeighborList`` with ``torch.get_num_threads()`` threads (where this
    version of vesin takes a thread count; by default it takes every core)."""
    from vesin import NeighborList

    threads = {"n_threads": torch.get_num_threads()} if _vesin_takes_threads() else {}
    return NeighborList(cutoff=r, full_list=full_list, **threads)


@functools.lru_cache(maxsize=1)
def _vesin_takes_threads() -> bool:
    """Whether the installed vesin's ``NeighborList`` has ``n_threads`` (probed once)."""
    import inspect

    from vesin import NeighborList

    return "n_threads" in inspect.signature(NeighborList.__init__).parameters


def _both_ways_sorted(src: Tensor, tgt: Tensor, n: int, loop: bool) -> Tensor:
    """``edge_index`` with every pair of the half list ``(src, tgt)`` in both directions
    (and the loops), sorted by target then source: one sort of the keys
    ``target * n + source`` (int32 when they fit: 2x faster) when ``n < 46341`` or there
    are at most ``KEY_SORT_MAX_PAIRS`` pairs; otherwise as a sparse ``n x n`` matrix summed
    with its transpose and converted to CSR (a counting sort by row) with sorted columns
    (measured 1.3-2.5x faster than an int64 sort there)."""
    narrow = n * n < 2**31
    if narrow or src.shape[0] <= KEY_SORT_MAX_PAIRS:
        kind = torch.int32 if narrow else torch.int64
        a, b = src.to(kind), tgt.to(kind)
        keys = [b * n + a, a * n + b]
        if loop:
            every = torch.arange(n, dtype=kind)
            keys.append(every * (n + 1))
        key = torch.sort(torch.cat(keys)).values
        edge_index = torch.empty(2, key.shape[0], dtype=torch.long)
        torch.remainder(key, n, out=edge_index[0])
        torch.div(key, n, rounding_mode="floor", out=edge_index[1])
        return edge_index
    import numpy as np
    import scipy.sparse as sp

    ones = np.ones(src.shape[0], dtype=np.int8)
    half = sp.csr_matrix((ones, (tgt.numpy(), src.numpy())), shape=(n, n))
    full = half + half.T
    if loop:
        full = full + sp.identity(n, dtype=np.int8, format="csr")
    full = full.tocsr()
    full.sort_indices()
    edge_index = np.empty((2, full.nnz), dtype=np.int64)  # written in place, no stack
    edge_index[0] = full.indices
    edge_index[1] = np.repeat(np.arange(n, dtype=np.int64), np.diff(full.indptr))
    return torch.from_numpy(edge_index)


def _vesin_cells(cell: Tensor | None, pbc: Tensor | bool | None, num_graphs: int) -> tuple:
    """Per graph: a ``[3, 3]`` float64 array and three periodic flags for vesin (a zero
    box, not periodic, without a cell)."""
    import numpy as np

    if cell is None:
        if pbc is not None and bool(torch.as_tensor(pbc).any()):
            raise ValueError("pbc was given without a cell; pass cell=[3, 3] or [B, 3, 3]")
        return np.zeros((num_graphs, 3, 3)), [[False] * 3] * num_graphs
    cell = torch.as_tensor(cell, dtype=torch.float64).detach().cpu()
    cell = cell.expand(num_graphs, 3, 3) if cell.shape == (3, 3) else cell
    if cell.dim() != 3 or cell.shape[1:] != (3, 3) or cell.shape[0] < num_graphs:
        raise ValueError(
            f"cell must be [3, 3] or [B, 3, 3] with B = {num_graphs}, got {tuple(cell.shape)}"
        )
    flags = torch.ones(3, dtype=torch.bool) if pbc is None else torch.as_tensor(pbc).cpu()
    flags = flags.bool().expand(3) if flags.dim() == 0 else flags.bool()
    flags = flags.expand(num_graphs, 3) if flags.dim() == 1 else flags
    if flags.shape != (num_graphs, 3):
        raise ValueError(f"pbc must be bool, [3] or [{num_graphs}, 3], got {tuple(flags.shape)}")
    singular = flags.any(-1) & (torch.linalg.det(cell[:num_graphs]).abs() < 1e-12)
    if singular.any():
        raise ValueError("a periodic cell is singular (zero volume)")
    return cell[:num_graphs].numpy(), flags.tolist()
