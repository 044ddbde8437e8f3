r"""The Clebsch–Gordan product of degrees :math:`\le 1` without the cross-product path,
with a hand-written backward.

With per-edge weights :math:`w_p` and path constants :math:`c_p` (CG value times path
normalisation), for ``x1 = (s_1, \vec v_1)`` per channel and ``x2 = (s_2, \vec v_2)``:

.. math::

    y_0 = c_{000}\, w_{000}\, s_1 s_2 + c_{110}\, w_{110}\, \vec v_1 \cdot \vec v_2, \qquad
    \vec y_1 = c_{011}\, w_{011}\, s_1 \vec v_2 + c_{101}\, w_{101}\, s_2 \vec v_1 .

Forward and backward are a dozen elementwise operations and batched dot products over
``[B, 1 or 3, C]``, with the constants as Python numbers (no table on the device) and
no autograd graph.  A second derivative (forces trained through
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


class _DegreeOneProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x1, x2, weight, pairs, plain, dim_out):  # noqa: D102
        ctx.save_for_backward(x1, x2, weight)
        constants = dict(pairs)
        ctx.constants, ctx.plain = constants, plain
        s1, v1 = x1[:, :1], x1[:, 1:4]
        s2, v2 = x2[:, :1, None], x2[:, 1:4, None]
        w = dict(zip(constants, weight.unbind(1), strict=True))  # path -> [B, C]
        out = x1.new_zeros(x1.shape[0], dim_out, x1.shape[2])
        if (0, 0, 0) in w:
            out[:, :1] += (w[(0, 0, 0)][:, None] * constants[(0, 0, 0)]) * (s1 * s2)
        if (1, 1, 0) in w:
            out[:, :1].addcmul_(w[(1, 1, 0)][:, None] * constants[(1, 1, 0)], _dot(v1, v2))
        if (0, 1, 1) in w:
            out[:, 1:].addcmul_(v2, (w[(0, 1, 1)][:, None] * constants[(0, 1, 1)]) * s1)
        if (1, 0, 1) in w:
            out[:, 1:].addcmul_(v1, (w[(1, 0, 1)][:, None] * constants[(1, 0, 1)]) * s2)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x1, x2, weight = ctx.saved_tensors
        constants = ctx.constants
        needs = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True: differentiate the plain form
            grads = differentiable_gradients(ctx.plain, (x1, x2, weight), needs, grad)
            return *grads, None, None, None
        s1, v1 = x1[:, :1], x1[:, 1:4]
        s2, v2 = x2[:, :1, None], x2[:, 1:4, None]
        g0, g1 = grad[:, :1], grad[:, 1:4]
        w = {p: weight[:, k : k + 1] * c for k, (p, c) in enumerate(constants.items())}
        g_x1, g_s2, g_v2 = torch.zeros_like(x1), x2.new_zeros(x2.shape[0], 1), None
        g_w = torch.empty_like(weight)
        for k, path in enumerate(constants):
            c = constants[path]
            if path == (0, 0, 0):
                torch.mul(g0, s1 * s2, out=g_w[:, k : k + 1]).mul_(c)
                g_x1[:, :1].addcmul_(g0 * s2, w[path])
                g_s2 += (g0 * s1 * w[path]).sum(2)
            elif path == (1, 1, 0):
                torch.mul(g0, _dot(v1, v2), out=g_w[:, k : k + 1]).mul_(c)
                scaled = g0 * w[path]  # [B, 1, C]
                g_x1[:, 1:].addcmul_(v2, scaled)
                part = (v1 * scaled).sum(2)  # [B, 3]
                g_v2 = part if g_v2 is None else g_v2 + part
            elif path == (0, 1, 1):
                g1_v2 = _dot(g1, v2)
                torch.mul(g1_v2, s1, out=g_w[:, k : k + 1]).mul_(c)
                g_x1[:, :1].addcmul_(g1_v2, w[path])
                part = (g1 * (s1 * w[path])).sum(2)
                g_v2 = part if g_v2 is None else g_v2 + part
            else:  # (1, 0, 1)
                g1_v1 = _dot(g1, v1)
                torch.mul(g1_v1, s2, out=g_w[:, k : k + 1]).mul_(c)
                g_x1[:, 1:].addcmul_(g1, s2 * w[path])
                g_s2 += (g1_v1 * w[path]).sum(2)
        g_x2 = None
        if needs[1]:
            g_x2 = torch.zeros_like(x2)
            g_x2[:, :1] = g_s2
            if g_v2 is not None:
                g_x2[:, 1:4] = g_v2
        return (g_x1 if needs[0] else None), g_x2, (g_w if needs[2] else None), None, None, None


def degree_one_product(
    x1: Tensor,
    x2: Tensor,
    weight: Tensor,
    constants: dict[tuple[int, int, int], float],
    plain: Callable[[Tensor, Tensor, Tensor], Tensor],
    dim_out: int,
) -> Tensor:
    """``x1 [B, 4, C]`` (degrees 0, 1), ``x2 [B, 4]``, per-edge ``weight [B, P, C]`` in the
    order of ``constants`` (path -> constant; paths (0, 0, 0), (0, 1, 1), (1, 0, 1) and
    (1, 1, 0), any subset) ->
    ``[B, dim_out, C]`` (``dim_out`` 1 or 4).  ``plain(x1, x2, weight)``: the same product
    in differentiable operations (for second derivatives)."""
    # (path, constant) pairs, not a dict: autograd tooling records the arguments
    pairs = tuple(constants.items())
    return _DegreeOneProduct.apply(x1, x2, weight, pairs, plain, dim_out)
