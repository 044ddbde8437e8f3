r"""Gaunt product on an S² quadrature grid ("The Price of Freedom", Xie et al., 2025).

Both inputs are evaluated on a Gauss–Legendre x uniform grid, multiplied pointwise and
projected back:

.. math::

    y_{l m c} = w^{(o)}_{l c} \sum_{g} \omega_g\, Y_l^m(\hat r_g)\,
        f_1(\hat r_g)\, f_2(\hat r_g), \qquad
    f_i(\hat r_g) = \sum_{l' m'} w^{(i)}_{l' c}\, x^{(i)}_{l' m' c}\, Y_{l'}^{m'}(\hat r_g).

The integrand is a spherical polynomial of degree :math:`L_1 + L_2 + L_{out}`, so a grid of
:math:`\lceil (L_1+L_2+L_{out}+1)/2 \rceil` polar by :math:`L_1+L_2+L_{out}+1` azimuthal
nodes makes the result exact (equal to the Gaunt-weighted Clebsch–Gordan product).  The
transforms are dense matrices ``[G, (L+1)**2]`` applied as large matrix products, which is
:math:`O(L^4)` per channel but runs at matrix-multiply speed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from geobasis._chunked import (
    accumulate_shared,
    differentiable_gradients,
    gradient_buffers,
    needs_autograd,
)
from geobasis.o3 import spherical_harmonics
from geobasis.o3.layout import degree_index, degree_slice
from geobasis.o3.s2grid import s2_grid
from geobasis.products._gaunt import GauntProduct

__all__ = ["GauntGridProduct"]


class _MirroredGridProduct(torch.autograd.Function):
    """Single-channel ``x2`` with degree weights: chunked forward, hand-written backward.

    Each cache-sized chunk is permuted into (even ``l+m`` | odd ``l+m``) order, weighted
    and transformed.  The grid values ``E, O`` of ``x1`` and the per-degree ``x2`` values
    are kept for backward when they fit in ``module.max_saved_bytes`` (else recomputed);
    the weighted pieces and ``a | b`` are recomputed (cheaper than a memory round trip).
    With ``create_graph=True`` the plain differentiable forward is differentiated instead
    (double backward).
    """

    @staticmethod
    def _pieces(module, x1, weight, start, stop):
        x1 = x1[start:stop]
        weight = weight[start:stop] if weight.shape[0] > 1 else weight
        x1_split = x1.index_select(1, module._split1)
        w1_split = weight.index_select(1, module._split_degree1)
        w2 = weight[:, module.lmax1 + 1 : module.lmax1 + module.lmax2 + 2]
        w_out = weight.index_select(1, module._index_out)
        return x1_split, w1_split, w2, w_out

    @staticmethod
    def forward(ctx, module, x1, x2, weight):  # noqa: D102
        ctx.module = module
        ctx.save_for_backward(x1, x2, weight)
        keep = any(ctx.needs_input_grad[1:])
        keep = keep and module.saved_bytes(x1) <= module.max_saved_bytes
        out, ctx.kept, ctx.y, ctx.size = _MirroredGridProduct.run(module, x1, x2, weight, keep)
        return out

    @staticmethod
    def run(module, x1, x2, weight, keep=False):
        """The chunked forward: output, what each chunk keeps for backward (its grid
        tensors, or ``None``), the unweighted outputs per chunk and the chunk size
        (backward splits alike)."""
        kept, ys = [], []
        out = x1.new_empty(x1.shape[0], module.dim_out, x1.shape[2])
        size = module.batch_chunk(x1)
        for start in range(0, x1.shape[0], size):
            pieces = _MirroredGridProduct._pieces(module, x1, weight, start, start + size)
            x1_split, w1_split, w2, w_out = pieces
            y_split = x1.new_empty(x1_split.shape[0], module.dim_out, x1.shape[2])
            saved = module._mirrored_forward(
                x1_split * w1_split, x2[start : start + size], w2, y_split
            )
            y = y_split.index_select(1, module._unsplitout)  # unweighted output
            torch.mul(y, w_out, out=out[start : start + size])
            if keep:  # E, O and the per-degree x2 values; a | b and the pieces are cheaper
                even, odd, _, parts = saved  # to recompute than to write and read back
                kept.append((even, odd, None, parts))
            else:
                kept.append(None)
            ys.append(y)
        return out, kept, ys, size

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        module = ctx.module
        x1, x2, weight = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[1:])
        if torch.is_grad_enabled():  # create_graph=True
            grads = differentiable_gradients(module._plain_product, (x1, x2, weight), needs, grad)
            return None, *grads
        need_x1, need_x2, need_w = needs
        buffers = gradient_buffers((x1, x2, weight), needs, zeroed=False)
        shared: list[Tensor | None] = [None, None, None]  # sums for tensors of batch 1
        n1, n2 = module.lmax1 + 1, module.lmax1 + module.lmax2 + 2
        size = ctx.size
        for n, start in enumerate(range(0, x1.shape[0], size)):
            stop = start + size
            pieces = _MirroredGridProduct._pieces(module, x1, weight, start, stop)
            x1_split, w1_split, w2, w_out = pieces
            saved = ctx.kept[n]
            u = x1_split * w1_split if saved is None else None
            g = grad[start:stop]
            g_split = (g * w_out).index_select(1, module._splitout)
            g_u, g_x2, g_w2 = module._mirrored_backward(
                u,
                x2[start:stop],
                w2,
                g_split,
                saved,
                (need_x1 or need_w, need_x2, need_w),
                None if buffers[1] is None else buffers[1][start:stop],
            )
            if need_x1:  # back to natural order, written straight into the gradient
                torch.index_select(g_u * w1_split, 1, module._unsplit1, out=buffers[0][start:stop])
            g_w = None
            if need_w:
                g_w = x1.new_empty(g.shape[0], *weight.shape[1:])
                g_w = g_w if buffers[2] is None else buffers[2][start:stop]
                # per-degree sums as index_add_ (2x faster than a 0/1 matrix product)
                g_w1 = g_w[:, :n1].zero_()
                g_w1.index_add_(1, module._split_degree1, g_u * x1_split)
                g_w[:, n1:n2] = g_w2
                g_w[:, n2:].zero_().index_add_(1, module._degree_out, g * ctx.y[n])
            accumulate_shared(shared, buffers, (None, None, g_w))
        return None, *(s if b is None else b for s, b in zip(shared, buffers, strict=True))


class GauntGridProduct(GauntProduct):
    r"""Pointwise product of two spherical functions, exact on a quadrature grid.

    Args:
        lmax1, lmax2, lmax_out: band limits of ``x1``, ``x2`` and the output.
        channels: number of channels ``C`` (needed for weights).
        weights: ``"internal"`` (per-degree weights ``[L1+L2+L_out+3, C]``, initialised to
            one), ``"external"`` (passed to ``forward``, ``[..., L1+L2+L_out+3, C]``) or
            ``"none"`` (the plain projected product).
        res_beta, res_alpha: grid size; the defaults are the smallest exact grid.  Smaller
            grids are allowed (approximate, aliased); a warning-free exact check is
            :attr:`is_exact`.

    Shapes: ``x1 [..., (L1+1)**2, C]``, ``x2 [..., (L2+1)**2, C]`` or ``[..., (L2+1)**2]``,
    output ``[..., (L_out+1)**2, C]``.
    """

    def __init__(
        self,
        lmax1: int,
        lmax2: int,
        lmax_out: int,
        channels: int | None = None,
        weights: str = "internal",
        *,
        res_beta: int | None = None,
        res_alpha: int | None = None,
    ) -> None:
        super().__init__(lmax1, lmax2, lmax_out, channels, weights)
        degree = lmax1 + lmax2 + lmax_out
        if res_beta is None:  # smallest exact grid (an odd count puts a ring on the equator)
            res_beta = math.ceil((degree + 1) / 2)
        self.res_beta = int(res_beta)
        self.res_alpha = degree + 1 if res_alpha is None else int(res_alpha)
        points, quadrature = s2_grid(self.res_beta, self.res_alpha)
        lmax = max(lmax1, lmax2, lmax_out)
        harmonics = spherical_harmonics(lmax, points)  # float64, [G, (lmax+1)**2]
        # Mirror symmetry y -> -y: Y_lm(-y) = (-1)^(l+m) Y_lm(y).  The Gauss-Legendre rings
        # are symmetric, so every point of the upper rings has a mirror image below and the
        # values there are E + O and E - O, where E and O use only the components of even
        # and odd l + m: each transform costs half of a dense one.  With an odd number of
        # rings the middle one is the equator, where O vanishes: it only carries E.
        # Point order: upper rings (P points), equator (Q = 0 or res_alpha), lower rings.
        pairs = self.res_beta // 2
        upper_rings = torch.arange(self.res_beta - pairs, self.res_beta)
        ring_order = [upper_rings, torch.arange(pairs, self.res_beta - pairs)]
        ring_order.append(self.res_beta - 1 - upper_rings)
        rings = torch.cat(ring_order)
        order = (rings[:, None] * self.res_alpha + torch.arange(self.res_alpha)).reshape(-1)
        harmonics, quadrature = harmonics[order], quadrature[order]
        self.num_pairs = pairs * self.res_alpha  # P
        self.num_even_points = harmonics.shape[0] - self.num_pairs  # P + Q
        even_points = slice(0, self.num_even_points)
        parity = torch.tensor([(l + m) % 2 for l in range(lmax + 1) for m in range(-l, l + 1)])
        for name, size in (("1", self.dim1), ("2", self.dim2), ("out", self.dim_out)):
            even = torch.nonzero(parity[:size] == 0)[:, 0]
            odd = torch.nonzero(parity[:size] == 1)[:, 0]
            self.register_buffer(f"_even{name}", even, persistent=False)
            self.register_buffer(f"_odd{name}", odd, persistent=False)
            if name != "2":  # x2 is never produced, so it needs no inverse order
                unsplit = torch.argsort(torch.cat([even, odd]))
                self.register_buffer(f"_unsplit{name}", unsplit, persistent=False)
            if name == "out":  # quadrature projections [D_even, P + Q] and [D_odd, P]
                weighted = harmonics * quadrature[:, None]
                self.register_table("_from_even", weighted[even_points, even].t().contiguous())
                self.register_table("_from_odd", weighted[: self.num_pairs, odd].t().contiguous())
            else:  # evaluations [P + Q, D_even] and [P, D_odd]
                self.register_table(f"_to_even{name}", harmonics[even_points, even].contiguous())
                self.register_table(f"_to_odd{name}", harmonics[: self.num_pairs, odd].contiguous())
        # [D2, G * (L2+1)]: the grid values of each degree of x2 separately
        per_degree = torch.zeros(self.dim2, harmonics.shape[0], lmax2 + 1, dtype=torch.float64)
        for l in range(lmax2 + 1):
            per_degree[degree_slice(l), :, l] = harmonics[:, degree_slice(l)].t()
        self.register_table("_per_degree2", per_degree.reshape(self.dim2, -1))
        self.register_table("_to_grid2", harmonics[:, : self.dim2].contiguous())
        # single-channel x2 with degree weights: per-degree values of a = upper + lower
        # (the value itself on the equator) and b = upper - lower, the two combinations the
        # mirrored product needs, as [D2, (L2+1) * (2P + Q)] with columns (l2, a | b): one
        # GEMM gives both, and each edge's [L2+1, 2P + Q] block is contiguous
        upper = per_degree[:, : self.num_pairs]
        lower = per_degree[:, self.num_even_points :]
        equator = per_degree[:, self.num_pairs : self.num_even_points]
        both = torch.cat([upper + lower, equator, upper - lower], dim=1)
        self.register_table("_x2_both", both.transpose(1, 2).reshape(self.dim2, -1))
        # (even | odd) order of x1 and the output, the degree of each x1 component in it,
        # and the degree of each output component (natural order)
        for name in ("1", "out"):
            split = torch.cat([getattr(self, f"_even{name}"), getattr(self, f"_odd{name}")])
            self.register_buffer(f"_split{name}", split, persistent=False)
        self.register_buffer("_split_degree1", degree_index(lmax1)[self._split1], False)
        self.register_buffer("_degree_out", degree_index(lmax_out), persistent=False)
        # batch elements per block; None: automatic (see batch_chunk), grid values in cache
        self.chunk_size: int | None = None
        self.max_saved_bytes = 1 << 29  # keep grid values for backward up to 512 MiB

    def cpu_batch_chunk(self, x1: Tensor) -> int:
        """Batch elements per chunk on CPU: :attr:`chunk_size` if set, else ``4096 / C`` (32..512):
        128 at C = 32, 64 at C = 64, measured best at L = 4."""
        if self.chunk_size is not None:
            return self.chunk_size
        return max(32, min(512, 4096 // x1.shape[-1]))

    @property
    def is_exact(self) -> bool:
        """Whether the grid integrates degree ``L1 + L2 + L_out`` exactly."""
        degree = self.lmax1 + self.lmax2 + self.lmax_out
        return min(2 * self.res_beta - 1, self.res_alpha - 1) >= degree

    def _product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        fast = weight is not None and x2.dim() == 2
        if not fast:
            return self._chunked_plain_product(x1, x2, weight)
        if not needs_autograd(x1, x2, weight):  # inference: no autograd bookkeeping
            with torch.no_grad():
                return _MirroredGridProduct.run(self, x1, x2, weight)[0]
        return _MirroredGridProduct.apply(self, x1, x2, weight)

    # ---------------------------------------------- hand-written path (the convolution case)
    def _mirrored_forward(
        self, u: Tensor, x2: Tensor, w2: Tensor, y_split: Tensor | None = None
    ) -> tuple[Tensor, ...]:
        """Grid work of one chunk: weighted ``u [B, D1, C]`` in (even | odd) order, ``x2``,
        degree weights ``w2 [B, L2+1, C]``; writes the unweighted output in (even | odd)
        order into ``y_split`` and returns what the backward needs.

        With ``P`` mirror pairs and ``Q`` equator points: ``E [B, P+Q, C]``, ``O [B, P, C]``,
        ``a [B, P+Q, C]`` (x2 factor on upper + lower, or on the equator) and
        ``b [B, P, C]`` (upper - lower); the even output projects ``E a + O b`` and the odd
        one ``E b + O a`` (pairs only: odd components vanish on the equator).
        """
        batch = x2.shape[0]
        pairs, n_even = self.num_pairs, self.num_even_points
        n_split = self._to_even1.shape[1]
        even = torch.matmul(self._to_even1, u[:, :n_split])  # [B, P+Q, C]
        odd = torch.matmul(self._to_odd1, u[:, n_split:])  # [B, P, C]
        # per-degree x2 values [B, L2+1, 2P+Q] (a | b), then weighted: ab [B, 2P+Q, C]
        width = self._x2_both.shape[1] // (self.lmax2 + 1)
        parts = torch.matmul(x2, self._x2_both).view(batch, self.lmax2 + 1, width)
        ab = torch.matmul(parts.transpose(1, 2), w2)
        a, b = ab[:, :n_even], ab[:, n_even:]
        if y_split is not None:
            n_out = self._from_even.shape[0]
            p_even = even * a
            p_even[:, :pairs].addcmul_(odd, b)
            y_split[:, :n_out] = torch.matmul(self._from_even, p_even)
            p_odd = (even[:, :pairs] * b).addcmul_(odd, a[:, :pairs])
            y_split[:, n_out:] = torch.matmul(self._from_odd, p_odd)
        return even, odd, ab, parts

    def _mirrored_backward(
        self,
        u: Tensor | None,
        x2: Tensor,
        w2: Tensor,
        g_split: Tensor,
        saved: tuple[Tensor, ...] | None,
        needs: tuple[bool, bool, bool],
        out_x2: Tensor | None = None,
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """Gradients of one chunk w.r.t. ``u`` (in (even | odd) order), ``x2`` (written into
        ``out_x2`` if given) and ``w2``; ``u`` is only needed when nothing was ``saved``."""
        if saved is None:
            saved = self._mirrored_forward(u, x2, w2)
        even, odd, ab, parts = saved
        if ab is None:  # not kept (see _MirroredGridProduct.run)
            ab = torch.matmul(parts.transpose(1, 2), w2)
        pairs, n_even = self.num_pairs, self.num_even_points
        a, b = ab[:, :n_even], ab[:, n_even:]
        batch = x2.shape[0]
        need_u, need_x2, need_w2 = needs
        n_out = self._from_even.shape[0]
        g_total = torch.matmul(self._from_even.t(), g_split[:, :n_out])  # [B, P+Q, C]
        g_difference = torch.matmul(self._from_odd.t(), g_split[:, n_out:])  # [B, P, C]
        g_u = g_x2 = g_w2 = None
        if need_u:  # in-place accumulation: one memory stream less per product
            g_even = g_total * a
            g_even[:, :pairs].addcmul_(g_difference, b)
            g_odd = (g_total[:, :pairs] * b).addcmul_(g_difference, a[:, :pairs])
            g_u = torch.cat(
                [torch.matmul(self._to_even1.t(), g_even), torch.matmul(self._to_odd1.t(), g_odd)],
                dim=1,
            )
        if need_x2 or need_w2:
            g_ab = torch.empty_like(ab)
            g_a, g_b = g_ab[:, :n_even], g_ab[:, n_even:]
            torch.mul(g_total, even, out=g_a)[:, :pairs].addcmul_(g_difference, odd)
            torch.mul(g_total[:, :pairs], odd, out=g_b).addcmul_(g_difference, even[:, :pairs])
        if need_x2:
            # [B, L2+1, 2P+Q]: the gradient of the per-degree values (w2 on the left keeps
            # the small dimension out of the GEMM's columns: 2x faster than g_ab @ w2^T)
            g_parts = torch.matmul(w2, g_ab.transpose(1, 2))
            g_x2 = torch.matmul(g_parts.view(batch, -1), self._x2_both.t(), out=out_x2)
        if need_w2:
            g_w2 = torch.matmul(parts, g_ab)  # [B, L2+1, C]
        return g_u, g_x2, g_w2

    def saved_bytes(self, x1: Tensor) -> int:
        """Memory the fast path keeps for backward: the grid tensors ``E, O`` and the
        unweighted output per batch element."""
        grid = self.num_pairs + self.num_even_points
        per_element = grid + self.dim_out
        return x1.shape[0] * per_element * x1.shape[-1] * x1.element_size()

    def _to_grid(self, x: Tensor, which: str) -> tuple[Tensor, Tensor]:
        """``x [B, D, C]`` -> grid values: upper rings and equator ``[B, P+Q, C]``, lower
        rings ``[B, P, C]``."""
        pairs = self.num_pairs
        even = torch.matmul(getattr(self, f"_to_even{which}"), x[:, getattr(self, f"_even{which}")])
        odd = torch.matmul(getattr(self, f"_to_odd{which}"), x[:, getattr(self, f"_odd{which}")])
        first = torch.cat([even[:, :pairs] + odd, even[:, pairs:]], dim=1)
        return first, even[:, :pairs] - odd

    def _from_grid_values(self, first: Tensor, lower: Tensor) -> Tensor:
        """Grid values (as returned by :meth:`_to_grid`) -> ``[B, D_out, C]`` (quadrature
        projection)."""
        pairs = self.num_pairs
        even_part = torch.cat([first[:, :pairs] + lower, first[:, pairs:]], dim=1)
        even = torch.matmul(self._from_even, even_part)
        odd = torch.matmul(self._from_odd, first[:, :pairs] - lower)
        return torch.cat([even, odd], dim=1).index_select(1, self._unsplitout)

    def _plain_product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        if weight is None:
            w2 = w_out = None
        else:
            w1, w2, w_out = self.split_weight(weight)  # per component
            x1 = x1 * w1
        f1 = self._to_grid(x1, "1")
        if x2.dim() == 3:
            f2 = self._to_grid(x2 if w2 is None else x2 * w2, "2")
        else:
            if w2 is None:
                values = torch.matmul(x2, self._to_grid2.t()).unsqueeze(-1)  # [B, G, 1]
            else:
                # degree weights on a single-channel x2: the grid values of each degree are
                # channel-free (one GEMM), then mixed per batch element by the weights
                batch = x2.shape[0]
                per_degree = torch.matmul(x2, self._per_degree2).view(batch, -1, self.lmax2 + 1)
                degree_weights = weight[:, self.lmax1 + 1 : self.lmax1 + self.lmax2 + 2]
                values = torch.matmul(per_degree, degree_weights)  # [B, G, C]
            f2 = values[:, : self.num_even_points], values[:, self.num_even_points :]
        out = self._from_grid_values(f1[0] * f2[0], f1[1] * f2[1])  # [B, D_out, C]
        return out if w_out is None else out * w_out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", res_beta={self.res_beta}, res_alpha={self.res_alpha}"
