r"""The Clebsch–Gordan product of degrees :math:`\le 1` without the cross-product path,
with a hand-written backward.

With per-edge weights :math:`w_p` and path constants :math:`c_p` (CG value times path
normalisation), for ``x1 = (s_1, \vec v_1)`` per channel and ``x2 = (s_2, \vec v_2)``:

.. math::

    y_0 = c_{000}\, w_{000}\, s_1 s_2 + c_{110}\, w_{110}\, \vec v_1 \cdot \vec v_2, \qquad
    \vec y_1 = c_{011}\, w_{011}\, s_1 \vec v_2 + c_{101}\, w_{101}\, s_2 \vec v_1 .

Forward and backward are about 11 and 30 elementwise operations over ``[B, 1 or 3, C]``
and no autograd graph: the constants scale the weights in one pass (the module's ``P``-vector
table, built once), shared factors are computed once, outputs and gradients are written in
place (no zero fill), and each per-edge gradient of ``x2`` is one accumulated temporary and one
sum over channels.  A second derivative (forces trained through
the product) differentiates the plain form, which the caller passes in.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from geobasis._chunked import differentiable_gradients

__all__ = ["degree_one_product"]


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """``sum_m a[:, m] b[:, m]`` over the 3 components: ``[B, 3, C] x [B, 3, 1 or C]``
    -> ``[B, 1, C]``, as three multiply-adds of ``[B, 1, C]`` slices (a sum over the
    middle dimension of ``[B, 3, C]`` is 2-3x slower on CPU; measured)."""
    out = a[:, :1] * b[:, :1]
    out.addcmul_(a[:, 1:2], b[:, 1:2])
    return out.addcmul_(a[:, 2:3], b[:, 2:3])


def _accumulate(out: Tensor, parts: list[tuple[Tensor, Tensor]]) -> Tensor:
    """``out = sum(a * b for a, b in parts)`` in place: the first product written straight
    into ``out`` (no zero fill), the others added with ``addcmul_``."""
    if not parts:
        return out.zero_()
    torch.mul(*parts[0], out=out)
    for a, b in parts[1:]:
        out.addcmul_(a, b)
    return out


def _channel_sum(parts: list[tuple[Tensor, Tensor]], work: Tensor) -> Tensor:
    """``sum_c sum(a * b for a, b in parts)``: ``[B, K, C]`` products -> ``[B, K]``,
    accumulated in ``work [B, K, C]`` and reduced once."""
    return _accumulate(work, parts).sum(2)


class _DegreeOneProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x1, x2, weight, scale, pairs, plain, dim_out):  # noqa: D102
        constants = dict(pairs)
        scale = scale.to(weight.dtype).unsqueeze(-1)  # [P, 1]: the module's constant table
        scaled = weight * scale  # the path constants folded into the weights once: [B, P, C]
        w = {path: scaled[:, k : k + 1] for k, path in enumerate(constants)}  # [B, 1, C]
        s1, v1 = x1[:, :1], x1[:, 1:4]
        s2, v2 = x2[:, :1, None], x2[:, 1:4, None]
        dot = _dot(v1, v2) if (1, 1, 0) in w else None  # [B, 1, C], kept for backward
        out = x1.new_empty(x1.shape[0], dim_out, x1.shape[2])
        scalar = []
        if (0, 0, 0) in w:
            scalar.append((w[(0, 0, 0)] * s2, s1))
        if dot is not None:
            scalar.append((w[(1, 1, 0)], dot))
        _accumulate(out[:, :1], scalar)
        if dim_out > 1:
            vector = []
            if (0, 1, 1) in w:
                vector.append((v2, w[(0, 1, 1)] * s1))
            if (1, 0, 1) in w:
                vector.append((v1, w[(1, 0, 1)] * s2))
            _accumulate(out[:, 1:], vector)
        ctx.save_for_backward(x1, x2, weight, scaled, dot, scale)
        ctx.constants, ctx.plain = constants, plain
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x1, x2, weight, scaled, dot, scale = ctx.saved_tensors
        constants = ctx.constants
        needs = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True: differentiate the plain form
            grads = differentiable_gradients(ctx.plain, (x1, x2, weight), needs, grad)
            return *grads, None, None, None, None
        s1, v1 = x1[:, :1], x1[:, 1:4]
        s2, v2 = x2[:, :1, None], x2[:, 1:4, None]
        g0, g1 = grad[:, :1], grad[:, 1:4]
        w = {path: scaled[:, k : k + 1] for k, path in enumerate(constants)}
        g_w = torch.empty_like(weight)  # d/d(scaled weight), times the constants at the end
        slot = {path: g_w[:, k : k + 1] for k, path in enumerate(constants)}
        g_s1, g_v1, g_s2, g_v2 = [], [], [], []  # parts of the input gradients
        if (0, 0, 0) in w:  # y0 += w s2 s1
            g0_s1 = g0 * s1
            torch.mul(g0_s1, s2, out=slot[(0, 0, 0)])
            g_s1.append((g0, w[(0, 0, 0)] * s2))
            g_s2.append((g0_s1, w[(0, 0, 0)]))
        if (1, 1, 0) in w:  # y0 += w (v1 . v2)
            torch.mul(g0, dot, out=slot[(1, 1, 0)])
            g0_w = g0 * w[(1, 1, 0)]
            g_v1.append((v2, g0_w))
            g_v2.append((v1, g0_w))
        if (0, 1, 1) in w:  # y1 += v2 (w s1)
            g1_v2 = _dot(g1, v2)
            torch.mul(g1_v2, s1, out=slot[(0, 1, 1)])
            g_s1.append((g1_v2, w[(0, 1, 1)]))
            g_v2.append((g1, w[(0, 1, 1)] * s1))
        if (1, 0, 1) in w:  # y1 += v1 (w s2)
            g1_v1 = _dot(g1, v1)
            torch.mul(g1_v1, s2, out=slot[(1, 0, 1)])
            g_v1.append((g1, w[(1, 0, 1)] * s2))
            g_s2.append((g1_v1, w[(1, 0, 1)]))
        g_w.mul_(scale)
        g_x1 = None
        if needs[0]:
            g_x1 = x1.new_empty(x1.shape)
            _accumulate(g_x1[:, :1], g_s1)
            _accumulate(g_x1[:, 1:], g_v1)
        g_x2 = None
        if needs[1]:
            g_x2 = x2.new_empty(x2.shape)
            g_x2[:, :1] = _channel_sum(g_s2, grad.new_empty(grad.shape[0], 1, grad.shape[2]))
            if x2.shape[1] > 1:
                g_x2[:, 1:4] = _channel_sum(g_v2, grad.new_empty(grad.shape[0], 3, grad.shape[2]))
        return g_x1, g_x2, (g_w if needs[2] else None), None, None, None, None


def degree_one_product(
    x1: Tensor,
    x2: Tensor,
    weight: Tensor,
    constants: dict[tuple[int, int, int], float],
    scale: Tensor,
    plain: Callable[[Tensor, Tensor, Tensor], Tensor],
    dim_out: int,
) -> Tensor:
    """``x1 [B, 4, C]`` (degrees 0, 1), ``x2 [B, 4]``, per-edge ``weight [B, P, C]`` in the
    order of ``constants`` (path -> constant; paths (0, 0, 0), (0, 1, 1), (1, 0, 1) and
    (1, 1, 0), any subset; ``scale [P]``: the same constants as a tensor on the device) ->
    ``[B, dim_out, C]`` (``dim_out`` 1 or 4).  ``plain(x1, x2, weight)``: the same product
    in differentiable operations (for second derivatives)."""
    # (path, constant) pairs, not a dict: autograd tooling records the arguments
    pairs = tuple(constants.items())
    return _DegreeOneProduct.apply(x1, x2, weight, scale, pairs, plain, dim_out)
