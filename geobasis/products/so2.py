r"""The Clebsch–Gordan product with edge harmonics as SO(2) maps in the edge frame (eSCN).

For an edge direction :math:`\hat r`, rotate the features into the frame where
:math:`\hat r` is the polar axis (e3nn's :math:`y`): there the edge harmonics vanish
except at :math:`m = 0`, :math:`Y_{l_2 m_2}(\hat y) = \delta_{m_2 0}\, y_{l_2}`, and the
Clebsch–Gordan coupling only connects components of equal :math:`|m|`.  In e3nn's real
basis the product becomes, for every :math:`m \ge 0` and channel :math:`c`,

.. math::

    \tilde y_{l, +m} = \sum_{l_1} W^{(1)}_{m, l l_1}\, \tilde x_{l_1, +m}
                       - W^{(2)}_{m, l l_1}\, \tilde x_{l_1, -m}, \qquad
    \tilde y_{l, -m} = \sum_{l_1} W^{(2)}_{m, l l_1}\, \tilde x_{l_1, +m}
                       + W^{(1)}_{m, l l_1}\, \tilde x_{l_1, -m}

(:math:`W^{(2)}_0 = 0`), with :math:`\tilde x = D(R)^\top x`, :math:`y = D(R)\, \tilde y`
and :math:`R = R_y(\alpha) R_x(\beta)` the rotation taking :math:`\hat y` to
:math:`\hat r`.  The path :math:`(l_1, l_2, l)` of the CG product contributes
:math:`\nu_p w_p\, y_{l_2}\, C^{l, m}_{l_1 m, l_2 0}` to :math:`W^{(1)}_{m, l l_1}` when
:math:`l_1 + l_2 + l` is even and to :math:`W^{(2)}` when it is odd
(:meth:`SO2Product.weights_from_cg`).  Conversely, any :math:`W^{(1)}` is reached by the
even paths with :math:`l_2 \le l_1 + l` (there are :math:`\min(l_1, l) + 1` of them, one
per :math:`m`), so the SO(2) weights span the CG product with edge harmonics up to
:math:`L_1 + L_{out}`, whatever ``lmax2``: more expressive than the CG product at a
lower ``lmax2``.

Cost: the rotation is built once per edge, independent of the channels, as one matrix per
degree: :math:`T_l = Z_l(\alpha)\, J_l Z_l(\beta) J_l^\top`, where rotations about the
polar axis :math:`Z` are diagonal in :math:`\pm m` pairs and the tilt goes through one
constant matrix :math:`J = D(Q)` per degree, :math:`Q \hat y = \hat x`.  Every entry is
linear in :math:`(\cos k\beta, \sin k\beta)` times :math:`\cos |m|\alpha` or
:math:`\sin |m|\alpha`, so all degrees come from two small matrix products with constant
tables (no per-edge ``matrix_exp``): :math:`O(L^3)` per edge.  Degrees 0-4 share one
dense block-diagonal matrix (one batched matrix product beats five small ones).  Applying
it and the SO(2)
maps costs :math:`O(L^3)` per edge and channel, against the CG product's :math:`O(L^5)`.
Forward and backward are written out: on CPU edge by edge in C
(:mod:`geobasis.products._so2_native`, with a C compiler; each edge's rotations are built
from the constant terms of :math:`X_l(\beta)` and never stored, its rotated features stay
in cache, each rotation uses only its degree's rows), elsewhere as batched PyTorch
operations in blocks of edges (:mod:`geobasis.products._so2_kernel`); second derivatives
differentiate the plain form.

Parity: :math:`W^{(1)}` alone (``paths="even"``) is O(3)-equivariant with natural parity,
:math:`W^{(2)}` alone (``"odd"``) gives pseudotensors, both (``"all"``) SO(3) only, as for
:class:`~geobasis.products.ClebschGordanProduct`.

``x2`` is the edge harmonics (``"component"`` normalisation, degrees up to ``lmax2 >=
1``): the product reads only the direction from its degree-1 part, :math:`Y_1 \propto
(x, y, z)`, and acts as the CG product with :math:`Y(\hat r)` of that direction.  A zero
vector has no direction; its edge is treated as pointing along :math:`\hat y`.

Reference: Passaro & Zitnick, "Reducing SO(3) convolutions to SO(2) for efficient
equivariant GNNs" (eSCN, ICML 2023).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from geobasis.o3 import clebsch_gordan, matrix_z, wigner_D
from geobasis.o3.layout import degree_slice
from geobasis.products._base import EquivariantProduct
from geobasis.products._so2_kernel import rotate, so2_edges
from geobasis.products._so2_native import so2_native, usable, weight_rows

__all__ = ["SO2Product"]


class SO2Product(EquivariantProduct):
    r"""Clebsch–Gordan product with edge harmonics through per-:math:`m` SO(2) maps.

    Args:
        lmax1, lmax2, lmax_out: band limits of ``x1``, of the edge harmonics ``x2`` (at least
            1; it sets which CG weights :meth:`weights_from_cg` maps) and of the output.
        channels: number of channels ``C``.
        weights: ``"internal"`` or ``"external"`` (``[..., num_weights, C]`` per edge);
            ``"none"`` is refused (the SO(2) maps are the weights).
        paths: ``"even"`` (:math:`W^{(1)}`: O(3), natural parity; the default),
            ``"odd"`` (:math:`W^{(2)}`: pseudotensor output) or ``"all"`` (both: SO(3)).

    Attributes:
        slots: ``(kind, m, l, l1)`` of every weight row, ``kind`` 1 or 2 for
            :math:`W^{(1)}` / :math:`W^{(2)}`.
        weight_shape: ``(len(slots), C)``.

    Shapes: ``x1 [..., (L1+1)**2, C]``, ``x2 [..., (L2+1)**2]``, output
    ``[..., (L_out+1)**2, C]``.
    """

    def __init__(
        self,
        lmax1: int,
        lmax2: int,
        lmax_out: int,
        channels: int | None = None,
        weights: str = "internal",
        *,
        paths: str = "even",
    ) -> None:
        super().__init__(lmax1, lmax2, lmax_out, channels, weights)
        if weights == "none":
            raise ValueError("weights: SO2Product needs weights ('internal' or 'external')")
        if lmax2 < 1:
            raise ValueError(f"lmax2 must be at least 1 (the direction is read from l = 1), "
                             f"got {lmax2}")  # fmt: skip
        if paths not in ("even", "odd", "all"):
            raise ValueError(f"paths must be 'even', 'odd' or 'all', got {paths!r}")
        self.path_set = paths
        self.slots = _slots(lmax1, lmax_out, paths)
        self._blocks = _blocks(self.slots)
        self._input_sizes = [len(b[1]) for b in self._blocks for _ in range(2 if b[0] else 1)]
        self._weight_sizes = [r[1] - r[0] for b in self._blocks for r in b[4:6] if r is not None]
        self._kernel_blocks = _kernel_blocks(self._blocks)
        self._native_rows = weight_rows(self._blocks, min(lmax1, lmax_out) + 1)  # CPU, for C
        self._in_rows_m = self._kernel_blocks[-1][1][1]  # rows of x and y the maps use
        self._out_rows_m = self._kernel_blocks[-1][2][1]
        self._groups = frame_groups(max(lmax1, lmax_out))  # rotation blocks (components)
        self._folded = len(self._groups) == 1  # one dense T: orders folded in (_so2_kernel)
        self._init_weights(len(self.slots))
        self.build_tables((lmax1, lmax_out, paths), self._build_tables)

    def extra_repr(self) -> str:
        group = "SO(3) only" if self.path_set == "all" else "O(3)"
        return f"{super().extra_repr()}, paths={self.path_set!r} ({group})"

    # ------------------------------------------------------------------ tables
    def _build_tables(self) -> None:
        lmax = max(self.lmax1, self.lmax_out)
        order = _output_order(self._blocks, self.lmax_out)
        self.register_buffer("_order", order, persistent=False)
        rows = [r for m, plus, minus, *_ in self._blocks for r in (plus + minus if m else plus)]
        self.register_buffer("_m_major", torch.tensor(rows), persistent=False)
        inverse = torch.full((self.dim1,), len(rows))  # rows no map reads: the zero row
        inverse[torch.tensor(rows)] = torch.arange(len(rows))
        self.register_buffer("_m_major_inverse", inverse, persistent=False)
        # for the hand-written kernel: all rows of x (of the output) in m-major order, the
        # rows no map uses (reaches) last, so that a gather is a permutation
        in_positions = _spare_rows(inverse, len(rows))
        out_positions = _spare_rows(order, self._out_rows_m)
        self.register_buffer("_in_order", torch.argsort(in_positions), persistent=False)
        self.register_buffer("_out_order", torch.argsort(out_positions), persistent=False)
        degree_tilt, degree_pole = _frame_tables(lmax)
        tilt_table, pole_table = _grouped(degree_tilt, lmax), _grouped(degree_pole, lmax)
        self.register_table("_tilt_table", tilt_table)
        self.register_table("_pole_table", pole_table)
        self.register_table("_tilt_terms", _tilt_terms(degree_tilt, lmax))  # for the C kernel
        if len(frame_groups(lmax)) == 1:  # the kernel's T[:, in order] and T[:, out order]
            columns = _folded_columns(self._in_order, self._out_order, (lmax + 1) ** 2)
            self.register_table("_kernel_tilt", _select_entries(tilt_table, columns))
            self.register_table("_kernel_pole", _select_entries(pole_table, columns))

    # ------------------------------------------------------------------ forward
    def _product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        self._check_harmonics(x2)
        # CPU with a C compiler: edge by edge in C (_so2_native), which reads raw memory, so
        # only with one dtype throughout (the PyTorch kernel reports a mismatch)
        if usable(x1) and x1.dtype == weight.dtype == self._tilt_terms.dtype:
            return so2_native(self, x1, x2[:, 1:4], weight)
        return so2_edges(self, x1, x2[:, 1:4], weight, self.batch_chunk(x1))

    def cpu_batch_chunk(self, x1: Tensor) -> int:
        """Edges per block of the batched PyTorch kernel on CPU (without a C compiler; the C
        kernel goes edge by edge): :attr:`chunk_size` if set; else the power of two
        between 64 and 1024 whose weights and features take about 8 MiB (measured at
        10,000 edges, C = 32: 1024 best at L = 2-3, 256-512 at L = 4-6, 128 at L = 8, and
        64 at L = 8, C = 64; the whole batch at once is 1.2-1.5x slower at L = 2-4)."""
        if self.chunk_size is not None:
            return self.chunk_size
        per_edge = (self.num_weights + self.dim1 + self.dim_out) * x1.shape[-1]
        fit = (8 << 20) // max(per_edge * x1.element_size(), 1)
        return max(64, min(1024, 1 << max(fit.bit_length() - 1, 0)))

    def _plain_product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        self._check_harmonics(x2)
        return self._plain_edges(x1, x2[:, 1:4], weight)

    @staticmethod
    def _check_harmonics(x2: Tensor) -> None:
        if x2.dim() != 2:
            raise ValueError(
                "SO2Product: x2 must be edge harmonics [..., (L2+1)**2] with one shared "
                f"channel, got {tuple(x2.shape)} per batch element with channels"
            )

    def _plain_edges(self, x1: Tensor, direction: Tensor, weight: Tensor) -> Tensor:
        """The product in plain autograd operations, from the edge directions."""
        frames = self._frame_matrices(self._frame_entries(direction))
        x = rotate(frames, self._groups, x1, to_frame=True)  # into the edge frame
        y = self._so2_maps(x, weight)
        return rotate(frames, self._groups, y, to_frame=False)  # and back

    def _frame_entries(self, direction: Tensor) -> Tensor:
        r"""``[B, \sum_l (2l+1)^2]``: per edge, the entries of every degree's rotation
        ``T_l`` into its frame (:meth:`_frame_matrices` cuts them), with
        :math:`\tilde x_l = T_l^\top x_l`.  :math:`T_l = Z_l(\alpha) X_l(\beta)`: the tilted
        pole rotation :math:`X_l(\beta) = J_l Z_l(\beta) J_l^\top` is linear in
        :math:`(\cos k\beta, \sin k\beta)_{k \le L}` and the pole rotation
        :math:`Z_l(\alpha)` mixes the rows :math:`\pm m` with :math:`\cos |m|\alpha` and
        :math:`\sin |m|\alpha`, so both are one matrix product of those ``2L+1`` numbers
        per edge with a constant table (:func:`_frame_tables`) for every degree at once,
        then one multiply-add.  O(L^3) per edge, independent of the channels."""
        return self._entries_from_angles(*self._angle_features(direction))

    def _angle_features(self, direction: Tensor) -> tuple[Tensor, Tensor]:
        """``(cos kβ, sin kβ)`` as ``[B, 2L+1]`` and ``(cos kα, sin kα)`` as ``[B, 2L+2]``
        (:func:`_frame_angles`)."""
        lmax = max(self.lmax1, self.lmax_out)
        (cos_a, sin_a), (cos_b, sin_b) = _frame_angles(direction, lmax)
        return torch.cat([cos_b, sin_b[:, 1:]], dim=1), torch.cat([cos_a, sin_a], dim=1)

    def _entries_from_angles(self, beta: Tensor, alpha: Tensor, kernel: bool = False) -> Tensor:
        """:meth:`_frame_entries` from :meth:`_angle_features`; ``kernel``: in the layout of
        the hand-written kernel (with :attr:`_folded`, :func:`_folded_columns`)."""
        folded = kernel and self._folded
        tilt = self._kernel_tilt if folded else self._tilt_table
        pole = self._kernel_pole if folded else self._pole_table
        both = (beta @ tilt) * (alpha @ pole)  # [B, 2Q]
        rows, partners = both.chunk(2, dim=1)
        return rows + partners

    def _kernel_entries(self, direction: Tensor) -> Tensor:
        """:meth:`_frame_entries` in the kernel's layout."""
        return self._entries_from_angles(*self._angle_features(direction), kernel=True)

    @property
    def _in_gather(self) -> list[Tensor]:
        return _by_group(self._m_major_inverse, self._groups)

    @property
    def _out_gather(self) -> list[Tensor]:
        return _by_group(self._order, self._groups)

    def _frame_matrices(self, entries: Tensor) -> list[Tensor]:
        """Per block of :func:`frame_groups`, the dense block-diagonal ``T [B, d, d]``
        (views) from :meth:`_frame_entries`."""
        sizes = [(stop - start) ** 2 for start, stop in self._groups]
        return [
            block.unflatten(1, (round(size**0.5),) * 2)
            for size, block in zip(sizes, entries.split(sizes, dim=1), strict=True)
        ]

    def _so2_maps(self, x: Tensor, weight: Tensor) -> Tensor:
        """The per-:math:`m` maps in the edge frame, channels last: ``x [B, D1, C]``,
        ``weight [B or 1, S, C]`` -> ``[B, D_out, C]``.  One gather puts ``x`` in
        ``m``-major order (per ``m``: the ``+m`` rows, then the ``-m`` rows), one ``split``
        cuts it and the weights; each map is a broadcast multiply and a sum, vectorised
        over the contiguous channels (per-edge maps are too small for matrix kernels)."""
        inputs = iter(x.index_select(1, self._m_major).split(self._input_sizes, dim=1))
        weights = iter(weight.split(self._weight_sizes, dim=1))
        pieces = []
        for m, plus, _, out_rows, w1, w2 in self._blocks:
            shape = (weight.shape[0], len(out_rows), len(plus), weight.shape[-1])
            first = None if w1 is None else next(weights).reshape(shape)
            second = None if w2 is None else next(weights).reshape(shape)
            x_plus = next(inputs).unsqueeze(1)  # [B, 1, n1, C]
            if m == 0:
                pieces.append((first * x_plus).sum(2))
                continue
            x_minus = next(inputs).unsqueeze(1)
            y_plus = y_minus = 0
            if first is not None:
                y_plus = y_plus + (first * x_plus).sum(2)
                y_minus = y_minus + (first * x_minus).sum(2)
            if second is not None:
                y_plus = y_plus - (second * x_minus).sum(2)
                y_minus = y_minus + (second * x_plus).sum(2)
            pieces.extend([y_plus, y_minus])
        flat = torch.cat(pieces + [x.new_zeros(x.shape[0], 1, x.shape[-1])], dim=1)
        return flat.index_select(1, self._order)

    # ------------------------------------------------------------------ CG weights
    def weights_from_cg(self, cg_weight: Tensor, cg_paths: list[tuple[int, int, int]],
                        path_norms: list[float] | None = None) -> Tensor:  # fmt: skip
        """SO(2) weights ``[..., num_weights, C]`` giving exactly the CG product.

        ``SO2Product.weights_from_cg(w, cg.paths, cg.path_norms())`` for a
        :class:`~geobasis.products.ClebschGordanProduct` ``cg`` with the same ``lmax1``,
        ``lmax2`` and ``lmax_out``: then ``so2(x1, Y, so2_w) == cg(x1, Y, w)`` for edge
        harmonics ``Y`` ("component" normalisation) of nonzero vectors.
        """
        table = self.cg_map(cg_paths, path_norms).to(cg_weight)
        return torch.einsum("...pc,ps->...sc", cg_weight, table)

    def cg_map(self, cg_paths: list[tuple[int, int, int]],
               path_norms: list[float] | None = None) -> Tensor:  # fmt: skip
        """``[num_paths, num_weights]``: the linear map of :meth:`weights_from_cg`."""
        norms = path_norms or [1.0] * len(cg_paths)
        index = {slot: s for s, slot in enumerate(self.slots)}
        table = torch.zeros(len(cg_paths), len(self.slots), dtype=torch.float64)
        for p, (l1, l2, l) in enumerate(cg_paths):
            if l1 > self.lmax1 or l > self.lmax_out:  # any l2: the SO(2) maps span them
                raise ValueError(f"cg_paths: path {(l1, l2, l)} exceeds this product's lmax")
            kind = 1 if (l1 + l2 + l) % 2 == 0 else 2
            pole = math.sqrt(2 * l2 + 1) * norms[p]  # Y_l2(y-hat) at m = 0, "component"
            coupling = clebsch_gordan(l1, l2, l, dtype=torch.float64)[:, l2, :] * pole
            for m in range(kind - 1, min(l1, l) + 1):
                slot = (kind, m, l, l1)
                if slot not in index:
                    raise ValueError(
                        f"cg_paths: path {(l1, l2, l)} needs paths='all' or "
                        f"'{'even' if kind == 1 else 'odd'}' in SO2Product"
                    )
                # W1: C[+m -> +m]; W2: the coefficient of x(+m) in y(-m)
                value = coupling[l1 + m, l + m] if kind == 1 else coupling[l1 + m, l - m]
                table[p, index[slot]] = value
        return table


def _slots(lmax1: int, lmax_out: int, paths: str) -> list[tuple[int, int, int, int]]:
    """``(kind, m, l, l1)`` of every weight, grouped by ``m`` then kind, ``l``-major."""
    kinds = {"even": (1,), "odd": (2,), "all": (1, 2)}[paths]
    slots = []
    for m in range(min(lmax1, lmax_out) + 1):
        for kind in kinds:
            if kind == 2 and m == 0:
                continue
            degrees = [(l, l1) for l in range(m, lmax_out + 1) for l1 in range(m, lmax1 + 1)]
            slots += [(kind, m, l, l1) for l, l1 in degrees]
    return slots


def _blocks(slots) -> list[tuple]:
    """Per ``m``: ``(m, x rows +m, x rows -m, output degrees, W1 range, W2 range)``."""
    blocks = []
    for m in sorted({s[1] for s in slots}):
        ranges = {}
        for kind in (1, 2):
            members = [n for n, s in enumerate(slots) if s[0] == kind and s[1] == m]
            ranges[kind] = (members[0], members[-1] + 1) if members else None
        l1s = sorted({s[3] for s in slots if s[1] == m})
        ls = sorted({s[2] for s in slots if s[1] == m})
        plus = [l1 * l1 + l1 + m for l1 in l1s]
        minus = [l1 * l1 + l1 - m for l1 in l1s]
        blocks.append((m, plus, minus, ls, ranges[1], ranges[2]))
    return blocks


def _tilt_terms(degree_tilt: Tensor, lmax: int) -> Tensor:
    r"""``[sum_l (2l+1)^3]``: per degree ``l``, the constant matrices of
    :math:`X_l(\beta) = \sum_k \cos k\beta\, C_{lk} + \sin k\beta\, S_{lk}`, ``C_l0 ..
    C_ll`` then ``S_l1 .. S_ll``, each ``[2l+1, 2l+1]`` row-major, read from the
    per-degree ``tilt`` table of :func:`_frame_tables` (for ``_so2_product.c``)."""
    table = degree_tilt[:, : degree_tilt.shape[1] // 2]
    terms, offset = [], 0
    for l in range(lmax + 1):
        size = (2 * l + 1) ** 2
        rows = list(range(l + 1)) + list(range(lmax + 1, lmax + 1 + l))  # cos 0..l, sin 1..l
        terms.append(table[rows, offset : offset + size].reshape(-1))
        offset += size
    return torch.cat(terms)


def _frame_tables(lmax: int) -> tuple[Tensor, Tensor]:
    r"""Constants of :meth:`SO2Product._frame_entries`, over the entries ``q = (l, d, j)``
    of every degree's ``[2l+1, 2l+1]`` matrix flattened one after the other (``Q`` of
    them), each twice: for :math:`X_{dj}` and for :math:`X_{d'j}` of the partner row
    :math:`d'` (:math:`m_{d'} = -m_d`).

    * ``tilt [2 lmax + 1, 2Q]``: :math:`X = J Z J^\top` for the coefficient
      :math:`\cos k\beta` (rows ``k = 0..lmax``) and :math:`\sin k\beta` (rows
      ``lmax + k``), with :math:`J = D(Q)`, :math:`Q \hat y = \hat x`, and :math:`Z` the
      rotation about the pole by :math:`-\beta` acting on row vectors;
    * ``pole [2 lmax + 2, 2Q]``: one-hot picks of :math:`\cos |m_d|\alpha` (first ``Q``
      columns, from rows ``0..lmax``) and :math:`-\operatorname{sign}(m_d) \sin |m_d|\alpha`
      (last ``Q``, from rows ``lmax + 1 + k``), the two coefficients of :math:`Z(\alpha)`."""
    quarter = matrix_z(torch.tensor(-math.pi / 2, dtype=torch.float64))  # y -> x
    tilt = wigner_D(lmax, quarter)
    tables, partners, picks, offset = [], [], [], 0
    for l in range(lmax + 1):
        n = 2 * l + 1
        J = tilt[degree_slice(l), degree_slice(l)]
        m = torch.arange(-l, l + 1)
        blocks = []
        for kind in ("cos", "sin"):
            for k in range(0 if kind == "cos" else 1, lmax + 1):
                Z = torch.zeros(n, n, dtype=torch.float64)
                for d in range(n):
                    if abs(int(m[d])) == k:  # cos on the diagonal, sign(m) sin off it
                        Z[d if kind == "cos" else n - 1 - d, d] = (
                            1.0 if kind == "cos" else m[d].sign()
                        )
                blocks.append((J @ Z @ J.t()).reshape(-1))
        tables.append(torch.stack(blocks))
        rows, cols = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        partners.append((offset + (n - 1 - rows) * n + cols).reshape(-1))
        picks.append(m[rows].reshape(-1))
        offset += n * n
    table, partner, m_q = torch.cat(tables, dim=1), torch.cat(partners), torch.cat(picks)
    q = torch.arange(offset)
    pole = torch.zeros(2 * lmax + 2, 2 * offset, dtype=torch.float64)
    pole[m_q.abs(), q] = 1.0
    pole[lmax + 1 + m_q.abs(), offset + q] = -m_q.sign().double()
    return torch.cat([table, table[:, partner]], dim=1), pole


GROUP_DIM = 25
"""Degrees ``0..l`` share one dense block-diagonal rotation while it has at most this many
rows (degrees 0-4): one batched matrix product of ``[25, 25]`` matrices is 2-5x faster than
one per degree at L <= 4 (measured, C = 32); above, each degree has its own."""


def frame_groups(lmax: int) -> list[tuple[int, int]]:
    """Component ranges ``(start, stop)`` of the rotation blocks: degrees ``0..l`` together
    up to ``GROUP_DIM`` rows, then one degree each."""
    first = max(l for l in range(lmax + 1) if (l + 1) ** 2 <= GROUP_DIM)
    return [(0, (first + 1) ** 2)] + [(l * l, (l + 1) ** 2) for l in range(first + 1, lmax + 1)]


def _grouped(table: Tensor, lmax: int) -> Tensor:
    """Columns of a per-degree entry table (both halves) moved to the dense layout of
    :func:`frame_groups`, entries between different degrees of a group zero."""
    half = table.shape[1] // 2
    positions, offset = [], 0
    for start, stop in frame_groups(lmax):
        size = stop - start
        for l in range(round(start**0.5), round(stop**0.5)):
            n, first = 2 * l + 1, l * l - start
            rows = torch.arange(first, first + n)
            positions.append(offset + (rows[:, None] * size + rows[None, :]).reshape(-1))
        offset += size * size
    position = torch.cat(positions)
    out = table.new_zeros(table.shape[0], 2 * offset)
    out[:, position] = table[:, :half]
    out[:, offset + position] = table[:, half:]
    return out


def _folded_columns(in_order: Tensor, out_order: Tensor, dim: int) -> Tensor:
    """Entries of the dense ``T [dim, dim]`` (flattened) that make ``T[:D1, :D1][:, in_order]``
    and, unless it is the same matrix, ``T[:Dout, :Dout][:, out_order]`` (flattened, one
    after the other): the columns of the kernel's folded frames."""

    def picked(order: Tensor) -> Tensor:
        rows = torch.arange(order.shape[0])
        return (rows[:, None] * dim + order[None, :]).reshape(-1)

    if torch.equal(in_order, out_order):
        return picked(in_order)
    return torch.cat([picked(in_order), picked(out_order)])


def _select_entries(table: Tensor, columns: Tensor) -> Tensor:
    """The entry columns ``columns`` of both halves (rows, partners) of a frame table."""
    half = table.shape[1] // 2
    return torch.cat([table[:, columns], table[:, half + columns]], dim=1)


def _spare_rows(positions: Tensor, used: int) -> Tensor:
    """``positions`` with every entry ``>= used`` (a shared zero row) replaced by its own
    row ``used, used + 1, ...`` (scatters must not write two rows to one place)."""
    positions = positions.clone()
    spare = positions >= used
    positions[spare] = used + torch.arange(int(spare.sum()))
    return positions


def _by_group(positions: Tensor, groups: list[tuple[int, int]]) -> list[Tensor]:
    """``positions`` (one per component) cut into the blocks ``groups`` (the last ones cut
    short or dropped where ``positions`` ends)."""
    count = positions.shape[0]
    return [positions[start : min(stop, count)] for start, stop in groups if start < count]


def _kernel_blocks(blocks: list[tuple]) -> list[tuple]:
    """Per ``m``, for :mod:`geobasis.products._so2_kernel`: ``(m, rows of x in m-major
    order, rows of y in m-major order, n_in, n_out, W1 range, W2 range)``."""
    kernel, start_in, start_out = [], 0, 0
    for m, plus, _, degrees, w1, w2 in blocks:
        sides = 2 if m else 1
        n_in, n_out = len(plus), len(degrees)
        rows_in = (start_in, start_in + sides * n_in)
        rows_out = (start_out, start_out + sides * n_out)
        kernel.append((m, rows_in, rows_out, n_in, n_out, w1, w2))
        start_in, start_out = rows_in[1], rows_out[1]
    return kernel


def _output_order(blocks: list[tuple], lmax_out: int) -> Tensor:
    """Where each output component sits in the concatenated per-``m`` pieces (the last
    column, zeros, for components no map reaches: ``|m| > lmax1``, and ``m = 0`` for odd
    paths)."""
    position, column = {}, 0
    for m, _, _, degrees, _, _ in blocks:
        for sign in (1, -1) if m else (1,):
            for l in degrees:
                position[(l, sign * m)] = column
                column += 1
    order = [position.get((l, m), column) for l in range(lmax_out + 1) for m in range(-l, l + 1)]
    return torch.tensor(order)


def _frame_angles(direction: Tensor, lmax: int) -> tuple[tuple[Tensor, Tensor], ...]:
    r"""``(cos mα, sin mα), (cos mβ, sin mβ)``, ``[B, lmax+1]`` each, of the rotation
    :math:`R_y(\alpha) R_x(\beta)` taking :math:`\hat y` to ``direction [B, 3]`` (which is
    :math:`\propto (x, y, z)`): :math:`\cos\beta = y`, :math:`\sin\beta = \rho`,
    :math:`(\cos\alpha, \sin\alpha) = (z, x) / \rho`, :math:`\rho = \sqrt{x^2 + z^2}`."""
    x, y, z = direction.unbind(-1)
    norm2 = x * x + y * y + z * z
    rho2 = x * x + z * z
    on_axis = rho2 <= 0
    rho = torch.sqrt(torch.where(on_axis, torch.ones_like(rho2), rho2))
    norm = torch.sqrt(torch.where(norm2 > 0, norm2, torch.ones_like(norm2)))
    cos_a = torch.where(on_axis, torch.ones_like(z), z / rho)
    sin_a = torch.where(on_axis, torch.zeros_like(x), x / rho)
    cos_b = torch.where(norm2 > 0, y / norm, torch.ones_like(y))
    sin_b = torch.where(on_axis, torch.zeros_like(rho), rho / norm)
    return _multiples(cos_a, sin_a, lmax), _multiples(cos_b, sin_b, lmax)


def _multiples(cos: Tensor, sin: Tensor, lmax: int) -> tuple[Tensor, Tensor]:
    """``cos mθ, sin mθ`` for ``m = 0..lmax`` from ``cos θ, sin θ``: ``m θ`` with
    ``θ = atan2(sin, cos)`` (four operations whatever ``lmax``; a loop of angle additions
    costs four per ``m``)."""
    angle = torch.atan2(sin, cos)[:, None] * torch.arange(lmax + 1, dtype=cos.dtype,
                                                          device=cos.device)  # fmt: skip
    return torch.cos(angle), torch.sin(angle)
