"""Run a row-wise function in cache-sized chunks, recomputing each chunk in backward.

For functions whose intermediates are much larger than their inputs and outputs
(per-edge filter expansions, per-edge products), evaluating everything at once moves
every intermediate through main memory, and plain autograd keeps all of them alive
until backward.  :func:`chunked_rows` evaluates ``fn`` on blocks of rows without autograd,
saves only the inputs, and in backward re-runs each block under autograd and
differentiates it at once.  With ``create_graph=True`` it differentiates the plain
function on all rows instead, so second derivatives stay exact.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["chunked_rows"]


class _ChunkedRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn, chunk_size, num_rowwise, *tensors):  # noqa: D102
        ctx.fn, ctx.chunk_size, ctx.num_rowwise = fn, chunk_size, num_rowwise
        ctx.save_for_backward(*tensors)
        rows = tensors[0].shape[0]
        shared = tensors[num_rowwise:]
        parts = [
            fn(*(t[start : start + chunk_size] for t in tensors[:num_rowwise]), *shared)
            for start in range(0, max(rows, 1), chunk_size)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        tensors = ctx.saved_tensors
        needs = ctx.needs_input_grad[3:]
        wanted = [k for k, need in enumerate(needs) if need]
        if torch.is_grad_enabled():  # create_graph=True: differentiate the plain function
            with torch.enable_grad():
                out = ctx.fn(*tensors)
                grads = torch.autograd.grad(
                    out, [tensors[k] for k in wanted], grad, create_graph=True, allow_unused=True
                )
            result: list[Tensor | None] = [None] * len(tensors)
            for k, g in zip(wanted, grads, strict=True):
                result[k] = torch.zeros_like(tensors[k]) if g is None else g
            return None, None, None, *result
        n, size = ctx.num_rowwise, ctx.chunk_size
        rows = tensors[0].shape[0]
        result = [
            torch.zeros_like(t) if need else None for t, need in zip(tensors, needs, strict=True)
        ]
        for start in range(0, max(rows, 1), size):
            leaves = [
                (t[start : start + size] if k < n else t).detach().requires_grad_(needs[k])
                for k, t in enumerate(tensors)
            ]
            with torch.enable_grad():
                out = ctx.fn(*leaves)
                grads = torch.autograd.grad(
                    out, [leaves[k] for k in wanted], grad[start : start + size], allow_unused=True
                )
            for k, g in zip(wanted, grads, strict=True):
                if g is None:
                    continue
                if k < n:
                    result[k][start : start + size] = g
                else:
                    result[k] += g
        return None, None, None, *result


def chunked_rows(
    fn: Callable[..., Tensor],
    rowwise: tuple[Tensor, ...],
    shared: tuple[Tensor, ...] = (),
    chunk_size: int = 2048,
) -> Tensor:
    """``fn(*rowwise, *shared)`` evaluated on blocks of ``chunk_size`` rows.

    ``fn`` must act row by row on the tensors in ``rowwise`` (same first dimension) and
    return one output row per input row; ``shared`` tensors (parameters) are passed
    whole to every block and their gradients summed.  Exact in value and gradient,
    including second derivatives.  Without autograd it is simply a chunked loop.
    """
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (*rowwise, *shared))):
        rows = rowwise[0].shape[0]
        if rows <= chunk_size:
            return fn(*rowwise, *shared)
        return torch.cat(
            [
                fn(*(t[s : s + chunk_size] for t in rowwise), *shared)
                for s in range(0, rows, chunk_size)
            ]
        )
    return _ChunkedRows.apply(fn, chunk_size, len(rowwise), *rowwise, *shared)
