r"""The SO(2) product's forward and backward written out, block by block of edges.

Per block of edges, with :math:`T_l` the per-edge rotation of degree :math:`l` into the
edge frame and, per order :math:`m`, the features in the frame stacked as
:math:`\tilde x^{(m)} \in \mathbb R^{B \times 2 \times n_{in} \times C}` (rows
:math:`(l_1, +m)` then :math:`(l_1, -m)`):

.. math::

    \tilde x_l = T_l^\top x_l, \qquad
    \tilde y^{(m)}_{s o c} = \sum_i W^{(1)}_{o i c}\, \tilde x^{(m)}_{s i c}
        + W^{(2)}_{o i c}\, (J \tilde x^{(m)})_{s i c}, \qquad y_l = T_l \tilde y_l,

with :math:`(J \tilde x)_{+} = -\tilde x_{-}`, :math:`(J \tilde x)_{-} = \tilde x_{+}`.
Backward, with :math:`g` the output gradient:

.. math::

    \tilde g_l = T_l^\top g_l, \qquad
    \frac{\partial}{\partial W^{(1)}_{o i c}} = \sum_s \tilde g^{(m)}_{s o c}
        \tilde x^{(m)}_{s i c}, \qquad
    \frac{\partial}{\partial \tilde x^{(m)}_{s i c}} = \sum_o W^{(1)}_{o i c}
        \tilde g^{(m)}_{s o c} + \dots, \qquad
    \frac{\partial}{\partial x_l} = T_l \frac{\partial}{\partial \tilde x_l}.

The rotations are batched matrix products with the per-edge :math:`T` (built once per
edge, channel-free, kept for backward): one dense block-diagonal matrix for degrees 0-4
and one per higher degree (:func:`~geobasis.products.so2.frame_groups`).  The maps read
the rows in m-major order: with several blocks (``L >= 5``) the rotated rows are
concatenated and gathered into it (:class:`_GatheredFrames`); with one (``L <= 4``) the
order is folded into the columns of :math:`T` and each rotation is a single batched matrix
product written in place (:class:`_FoldedFrames`).  Each map is one
broadcast multiply ``[B, 2, n_out, n_in, C]`` over contiguous ``n_in x C`` rows and a sum
(3x faster than a multiply-add per input degree on ``C``-long rows; measured); no autograd
graph is built.  Only the inputs, the frames and (with several rotation blocks) the rotated
``x`` are kept for backward.
A gradient with respect to the edge direction (forces without ``create_graph``) goes
through :math:`\partial L / \partial T = x (\partial L / \partial \tilde x)^\top +
g \tilde y^\top` and autograd of the frame construction; with ``create_graph=True`` the
plain form is differentiated instead.
"""

from __future__ import annotations

import torch
from torch import Tensor

from geobasis._chunked import differentiable_gradients
from geobasis._workspace import large_empty

__all__ = ["so2_edges", "rotate"]


def rotate(frames: list[Tensor], groups: list[tuple[int, int]], x: Tensor, to_frame: bool,
           ) -> Tensor:  # fmt: skip
    """``x [B, D, C]`` rotated block by block (``groups``: component ranges, cut at ``D``):
    ``T^T x`` into the edge frame (``to_frame``), ``T x`` back."""
    parts = []
    for frame, (start, stop) in zip(frames, groups, strict=True):
        if start >= x.shape[1]:
            break
        size = min(stop, x.shape[1]) - start
        frame = frame[:, :size, :size]
        parts.append(torch.bmm(frame.transpose(1, 2) if to_frame else frame,
                               x[:, start : start + size]))  # fmt: skip
    return torch.cat(parts, dim=1)


class _GatheredFrames:
    """The rotations of a block of edges as one matrix per block of degrees
    (:func:`~geobasis.products.so2.frame_groups`), the rows put in m-major order by
    gathers; ``side`` ``"in"`` is ``x1`` and its gradient, ``"out"`` the output's."""

    def __init__(self, module, entries: Tensor) -> None:
        self.module, self.frames = module, module._frame_matrices(entries)

    def into(self, x: Tensor, out: Tensor, side: str) -> Tensor:
        """``T^T x`` for ``x [B, D, C]``, its rows in m-major order (then the rows no map
        uses) as ``out [B, D, C]``: one concatenation and one gather (faster than a
        scatter per degree; measured)."""
        order = self.module._in_order if side == "in" else self.module._out_order
        rotated = rotate(self.frames, self.module._groups, x, to_frame=True)
        return torch.index_select(rotated, 1, order, out=out)

    def back(self, y_m: Tensor, out: Tensor, side: str) -> Tensor:
        """``T y`` from the m-major rows of ``y_m [B, R + 1, C]`` (last row zero), as
        ``out [B, D, C]``."""
        gathers = self.module._in_gather if side == "in" else self.module._out_gather
        parts = []
        for frame, rows in zip(self.frames, gathers, strict=False):
            size = rows.shape[0]
            parts.append(torch.bmm(frame[:, :size, :size], y_m.index_select(1, rows)))
        return torch.cat(parts, dim=1, out=out)

    def entry_grad(self, x1: Tensor, gx_m: Tensor, grad: Tensor, y_m: Tensor) -> Tensor:
        r""":math:`\partial L / \partial T = x (\partial L / \partial \tilde x)^\top +
        g \tilde y^\top` per rotation block, flattened like the entries (entries between
        different degrees get gradients too; the constant zeros of the tables drop them)."""
        gx_frame = gx_m.index_select(1, self.module._m_major_inverse)
        y_frame = y_m.index_select(1, self.module._order)
        parts = []
        for start, stop in self.module._groups:
            size = stop - start
            part = x1.new_zeros(x1.shape[0], size, size)
            for left, right in ((x1, gx_frame), (grad, y_frame)):
                k = min(stop, left.shape[1]) - start
                if k > 0:
                    rows = slice(start, start + k)
                    part[:, :k, :k] += torch.bmm(left[:, rows], right[:, rows].transpose(1, 2))
            parts.append(part.flatten(1))
        return torch.cat(parts, dim=1)


class _FoldedFrames:
    """The rotations of a block of edges when all degrees share one dense ``T`` (degrees
    0-4): the m-major orders are folded into its columns, ``T_in = T[:, in_order]`` and
    ``T_out = T[:, out_order]`` (:func:`~geobasis.products.so2._folded_columns`), so each
    rotation is one batched matrix product written in place, with no gather or
    concatenation (0.99-1.16x the gathered path for the whole product at L = 2-4;
    measured)."""

    def __init__(self, module, entries: Tensor) -> None:
        d1, d_out = module.dim1, module.dim_out
        self.shared = entries.shape[1] == d1 * d1
        t_in = entries[:, : d1 * d1].unflatten(1, (d1, d1))
        t_out = t_in if self.shared else entries[:, d1 * d1 :].unflatten(1, (d_out, d_out))
        self.matrices = {"in": t_in, "out": t_out}

    def into(self, x: Tensor, out: Tensor, side: str) -> Tensor:  # noqa: D102
        return torch.bmm(self.matrices[side].transpose(1, 2), x, out=out)

    def back(self, y_m: Tensor, out: Tensor, side: str) -> Tensor:  # noqa: D102
        rows = y_m.shape[1] - 1  # the m-major rows (the last, zero, row dropped)
        return torch.bmm(self.matrices[side][:, :, :rows], y_m[:, :rows], out=out)

    def entry_grad(self, x1: Tensor, gx_m: Tensor, grad: Tensor, y_m: Tensor) -> Tensor:  # noqa: D102
        parts = []
        for side, left, right in (("in", x1, gx_m), ("out", grad, y_m)):
            rows = right.shape[1] - 1
            part = x1.new_zeros(self.matrices[side].shape)
            torch.bmm(left, right[:, :rows].transpose(1, 2), out=part[:, :, :rows])
            parts.append(part.flatten(1))
        return parts[0] + parts[1] if self.shared else torch.cat(parts, dim=1)


def _frames(module, entries: Tensor):
    """The rotations of one block of edges from its frame entries, as the module builds them."""
    return (_FoldedFrames if module._folded else _GatheredFrames)(module, entries)


def _turned(x: Tensor) -> Tensor:
    """:math:`J x`: ``(+m, -m) -> (-x_{-m}, x_{+m})`` on ``[B, 2, n, C]``."""
    return torch.stack((-x[:, 1], x[:, 0]), dim=1)


def _per_m(module, x_m: Tensor, y_m: Tensor):
    """Per order ``m``: ``(x, y, n_in, n_out, W1 rows, W2 rows)`` with ``x [B, sides, n_in,
    C]`` and ``y [B, sides, n_out, C]`` views of the m-major ``x_m`` and ``y_m``."""
    for m, (i0, i1), (o0, o1), n_in, n_out, w1, w2 in module._kernel_blocks:
        sides = 2 if m else 1
        x = x_m[:, i0:i1].unflatten(1, (sides, n_in))
        yield x, y_m[:, o0:o1].unflatten(1, (sides, n_out)), n_in, n_out, w1, w2


def _maps(module, x_m: Tensor, weight: Tensor) -> Tensor:
    """The per-m maps on ``x_m [B, R, C]`` (m-major rows) -> ``[B, Doutm + 1, C]``
    (m-major, last row zero).  Each is one broadcast multiply ``[B, 2, n_out, n_in, C]``
    and a sum over ``n_in``: the multiply runs over contiguous ``n_in x C`` rows (3x
    faster than a multiply-add per input degree, whose rows are only ``C`` long;
    measured)."""
    out = x_m.new_empty(x_m.shape[0], module._out_rows_m + 1, x_m.shape[2])
    out[:, -1] = 0
    for x, y, n_in, n_out, w1, w2 in _per_m(module, x_m, out):
        first = True
        for rows, source in ((w1, x), (w2, None if w2 is None else _turned(x))):
            if rows is None:
                continue
            w = weight[:, rows[0] : rows[1]].unflatten(1, (n_out, n_in))
            if first:
                torch.sum(w[:, None] * source[:, :, None], 3, out=y)
            else:
                y += (w[:, None] * source[:, :, None]).sum(3)
            first = False
    return out


def _maps_backward(module, x_m: Tensor, weight: Tensor, g_m: Tensor, grad_weight: Tensor | None,
                   need_x: bool, shared: bool) -> Tensor | None:  # fmt: skip
    """Gradients of :func:`_maps`: writes ``grad_weight`` (``[B, S, C]`` per edge, or the
    ``[1, S, C]`` sum over edges added to it with ``shared`` weights; ``None``: not wanted)
    and returns the gradient of the first ``Dm`` rows of ``x_m`` with a zero row appended,
    ``[B, Dm + 1, C]`` (or ``None``)."""
    grad_x = None
    if need_x:
        grad_x = x_m.new_empty(x_m.shape[0], module._in_rows_m + 1, x_m.shape[2])
        grad_x[:, -1] = 0
    total = grad_weight
    if shared and grad_weight is not None:  # per edge first, summed at the end
        grad_weight = grad_weight.new_empty(x_m.shape[0], *grad_weight.shape[1:])
    views = _per_m(module, x_m, g_m)
    gradients = _per_m(module, grad_x, g_m) if grad_x is not None else None
    for x, g, n_in, n_out, w1, w2 in views:
        gx = None if gradients is None else next(gradients)[0]
        first = True
        for rows, kind in ((w1, 1), (w2, 2)):
            if rows is None:
                continue
            if grad_weight is not None:
                source = x if kind == 1 else _turned(x)
                gw = grad_weight[:, rows[0] : rows[1]].unflatten(1, (n_out, n_in))
                torch.mul(g[:, 0, :, None], source[:, 0, None], out=gw)
                if g.shape[1] == 2:
                    gw.addcmul_(g[:, 1, :, None], source[:, 1, None])
            if gx is None:
                continue
            w = weight[:, rows[0] : rows[1]].unflatten(1, (n_out, n_in))
            product = w[:, None] * g[:, :, :, None]  # [B, sides, n_out, n_in, C]
            if kind == 2:  # J^T: (a, b) -> (b, -a)
                product = torch.stack((product[:, 1], -product[:, 0]), dim=1)
            if first:
                torch.sum(product, 2, out=gx)
            else:
                gx += product.sum(2)
            first = False
    if shared and total is not None:
        total += grad_weight.sum(0, keepdim=True)
    return grad_x


class _SO2Edges(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x1, direction, weight, module, size):  # noqa: D102
        beta, alpha = module._angle_features(direction)
        tilt = module._kernel_tilt if module._folded else module._tilt_table
        entries = large_empty((beta.shape[0], tilt.shape[1] // 2), beta)
        # the rotated x is kept for backward, except with folded frames: one batched
        # product per block, redone in backward instead of a stored copy (0.97-1.2x; measured)
        keep = not module._folded
        rotated = _rotated_buffer(x1, module.dim1, None if keep else size)
        out = large_empty((x1.shape[0], module.dim_out, x1.shape[2]), x1)
        for start in range(0, x1.shape[0], size):
            block = slice(start, start + size)
            w = weight if weight.shape[0] == 1 else weight[block]
            entries[block] = module._entries_from_angles(beta[block], alpha[block], kernel=True)
            frames = _frames(module, entries[block])
            x = x1[block]
            x_m = frames.into(x, rotated[block] if keep else rotated[: x.shape[0]], "in")
            frames.back(_maps(module, x_m, w), out[block], "out")
        ctx.module, ctx.size = module, size
        ctx.save_for_backward(x1, direction, weight, entries, rotated if keep else None)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x1, direction, weight, entries, x_rotated = ctx.saved_tensors
        module, size = ctx.module, ctx.size
        needs = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True: differentiate the plain form
            grads = differentiable_gradients(module._plain_edges, (x1, direction, weight), needs,
                                             grad)  # fmt: skip
            return *grads, None, None
        shared = weight.shape[0] == 1 and x1.shape[0] > 1
        grad_x1 = large_empty(x1.shape, x1) if needs[0] else None
        grad_frames = large_empty(entries.shape, entries) if needs[1] else None
        grad_w = None
        if needs[2]:
            grad_w = torch.zeros_like(weight) if shared else large_empty(weight.shape, weight)
        need_x = needs[0] or needs[1]
        g_m, scratch = (
            None,
            None if x_rotated is not None else _rotated_buffer(x1, module.dim1, size),
        )
        for start in range(0, x1.shape[0], size):
            block = slice(start, start + size)
            w = weight if shared else weight[block]
            g = grad[block]
            frames = _frames(module, entries[block])
            if x_rotated is not None:
                x_m = x_rotated[block]
            else:
                x_m = frames.into(x1[block], scratch[: g.shape[0]], "in")
            if g_m is None or g_m.shape[0] != g.shape[0]:
                g_m = g.new_empty(g.shape[0], module.dim_out, g.shape[2])
            frames.into(g, g_m, "out")
            gw = grad_w if grad_w is None or shared else grad_w[block]
            gx_m = _maps_backward(module, x_m, w, g_m, gw, need_x, shared)
            if needs[0]:
                frames.back(gx_m, grad_x1[block], "in")
            if needs[1]:
                y_m = _maps(module, x_m, w)
                grad_frames[block] = frames.entry_grad(x1[block], gx_m, g, y_m)
        grad_dir = None
        if needs[1]:  # through the frame construction
            leaf = direction.detach().requires_grad_()
            with torch.enable_grad():
                (grad_dir,) = torch.autograd.grad(module._kernel_entries(leaf), leaf, grad_frames)
        return grad_x1, grad_dir, grad_w, None, None


def _rotated_buffer(x1: Tensor, rows: int, size: int | None) -> Tensor:
    """``[E, rows, C]`` for the rotated ``x1 [E, D1, C]``, or one block of ``size`` edges."""
    edges = x1.shape[0] if size is None else min(size, x1.shape[0])
    return large_empty((edges, rows, x1.shape[2]), x1)


def so2_edges(module, x1: Tensor, direction: Tensor, weight: Tensor, size: int) -> Tensor:
    """The SO(2) product of ``module`` on ``x1 [B, D1, C]``, edge directions
    ``direction [B, 3]`` and ``weight [B or 1, S, C]``, in blocks of ``size`` edges with
    the hand-written backward above."""
    return _SO2Edges.apply(x1, direction, weight.contiguous(), module, size)
