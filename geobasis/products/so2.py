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
degree, by rotating :math:`2L+1` one-hot rows (rotations about the polar axis are diagonal
in :math:`\pm m` pairs, and the tilt :math:`R_x(\beta) = Q R_y(\beta) Q^\top` goes through
one constant matrix :math:`J = D(Q)` per degree, :math:`Q \hat y = \hat x`; no per-edge
``matrix_exp``): :math:`O(L^4)` per edge, shared by all channels.  Applying it and the
SO(2) maps costs :math:`O(L^3)` per edge and channel, against the CG product's
:math:`O(L^5)`.

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
        self._init_weights(len(self.slots))
        self.build_tables((lmax1, lmax_out, paths), self._build_tables)

    def extra_repr(self) -> str:
        group = "SO(3) only" if self.path_set == "all" else "O(3)"
        return f"{super().extra_repr()}, paths={self.path_set!r} ({group})"

    # ------------------------------------------------------------------ tables
    def _build_tables(self) -> None:
        lmax = max(self.lmax1, self.lmax_out)
        quarter = matrix_z(torch.tensor(-math.pi / 2, dtype=torch.float64))  # y -> x
        tilt = wigner_D(lmax, quarter)
        for l in range(lmax + 1):
            self.register_table(f"_tilt_l{l}", tilt[degree_slice(l), degree_slice(l)])
        m_of = torch.cat([torch.arange(-l, l + 1) for l in range(lmax + 1)])
        base = torch.cat([torch.full((2 * l + 1,), l * l + l) for l in range(lmax + 1)])
        self.register_buffer("_abs_m", m_of.abs(), persistent=False)
        self.register_buffer("_partner", base - m_of, persistent=False)  # (l, m) -> (l, -m)
        self.register_table("_sin_sign", -torch.sign(m_of).double())  # +m: -sin, -m: +sin
        order = _output_order(self._blocks, self.lmax_out)
        self.register_buffer("_order", order, persistent=False)
        rows = [r for m, plus, minus, *_ in self._blocks for r in (plus + minus if m else plus)]
        self.register_buffer("_m_major", torch.tensor(rows), persistent=False)
        # [2 lmax + 1, D]: row k holds component m = k - l of every degree l (one-hot), so
        # rotating it gives every degree's rotation matrix at once (see _frame_blocks)
        one_hot = torch.zeros(2 * lmax + 1, (lmax + 1) ** 2, dtype=torch.float64)
        for l in range(lmax + 1):
            for k in range(2 * l + 1):
                one_hot[k, l * l + k] = 1.0
        self.register_table("_one_hot", one_hot)

    # ------------------------------------------------------------------ forward
    def _product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        if self.batch_chunk(x1) >= x1.shape[0]:
            return self._plain_product(x1, x2, weight)
        return self._chunked_plain_product(x1, x2, weight)

    def cpu_batch_chunk(self, x1: Tensor) -> int:
        """Edges per block on CPU: :attr:`chunk_size` if set; else all of them while an
        edge's weights and features take at most 16 KiB (recomputing blocks in backward
        costs more than it saves there), and blocks of 256 above (measured: 1.5x faster
        at L = 8 and 1.3x at L = 6, C = 32, 10,000 edges; slower at L = 3)."""
        if self.chunk_size is not None:
            return self.chunk_size
        per_edge = (self.num_weights + self.dim1 + self.dim_out) * x1.shape[-1]
        return 256 if per_edge * x1.element_size() > 16 << 10 else max(x1.shape[0], 1)

    def _plain_product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        if x2.dim() != 2:
            raise ValueError(
                "SO2Product: x2 must be edge harmonics [..., (L2+1)**2] with one shared "
                f"channel, got {tuple(x2.shape)} per batch element with channels"
            )
        frames = self._frame_blocks(x2[:, 1:4])
        x = _rotate(frames, x1, self.lmax1, inverse=False)  # into the edge frame
        y = self._so2_maps(x, weight)
        return _rotate(frames, y, self.lmax_out, inverse=True)  # and back

    def _frame_blocks(self, direction: Tensor) -> list[Tensor]:
        r"""Per degree ``l``, ``T_l [B, 2l+1, 2l+1]`` with :math:`\tilde x_l = T_l^\top x_l`
        the rotation into each edge's frame.  Built by rotating the one-hot rows of
        ``_one_hot`` (``2 lmax + 1`` of them, whatever the number of channels): pole rotation
        by :math:`-\alpha`, tilt, pole rotation by :math:`-\beta`, tilt back; O(L^4) per
        edge, independent of the channels."""
        lmax = max(self.lmax1, self.lmax_out)
        alpha, beta = _frame_angles(direction, lmax)
        rows = self._one_hot.expand(direction.shape[0], -1, -1)  # [B, 2L+1, D]
        rows = self._about_pole(rows, alpha, inverse=True)
        rows = self._tilt(rows, lmax, transpose=True)
        rows = self._about_pole(rows, beta, inverse=True)
        rows = self._tilt(rows, lmax, transpose=False)
        return [rows[:, : 2 * l + 1, degree_slice(l)] for l in range(lmax + 1)]

    def _about_pole(self, x: Tensor, angle: tuple[Tensor, Tensor], inverse: bool) -> Tensor:
        r"""Rotation about the polar axis :math:`y` by :math:`\pm\theta` per batch element:
        ``angle = (cos m\theta, sin m\theta)`` as ``[B, L+1]``; ``x [B, C, D]``."""
        cos_m, sin_m = angle
        dim = x.shape[-1]
        index = self._abs_m[:dim]
        sign = self._sin_sign[:dim] * (-1.0 if inverse else 1.0)
        cos, sin = cos_m[:, index], sin_m[:, index] * sign
        return x * cos[:, None, :] + x[..., self._partner[:dim]] * sin[:, None, :]

    def _tilt(self, x: Tensor, lmax: int, transpose: bool) -> Tensor:
        """``J x`` (or ``J^T x``) degree by degree, ``x [B, C, D]``.  (``split``, not
        slicing: its backward concatenates once instead of padding every block.)"""
        blocks = x.split([2 * l + 1 for l in range(lmax + 1)], dim=-1)
        rotated = []
        for l, block in enumerate(blocks):
            tilt = getattr(self, f"_tilt_l{l}")
            rotated.append(block @ (tilt if transpose else tilt.t()))
        return torch.cat(rotated, dim=-1)

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


def _rotate(frames: list[Tensor], x: Tensor, lmax: int, inverse: bool) -> Tensor:
    """``x [B, (lmax+1)**2, C]`` rotated degree by degree: ``T_l^T x_l`` into the edge
    frame, ``T_l x_l`` back (``inverse``)."""
    blocks = x.split([2 * l + 1 for l in range(lmax + 1)], dim=1)
    rotated = [
        torch.matmul(frames[l] if inverse else frames[l].transpose(1, 2), block)
        for l, block in enumerate(blocks)
    ]
    return torch.cat(rotated, dim=1)


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
    """``cos mθ, sin mθ`` for ``m = 0..lmax`` from ``cos θ, sin θ`` (angle addition)."""
    cos_m, sin_m = [torch.ones_like(cos)], [torch.zeros_like(sin)]
    for _ in range(lmax):
        c, s = cos_m[-1], sin_m[-1]
        cos_m.append(c * cos - s * sin)
        sin_m.append(s * cos + c * sin)
    return torch.stack(cos_m, dim=-1), torch.stack(sin_m, dim=-1)
