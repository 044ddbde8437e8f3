"""Chunked autograd: run row-wise work in cache-sized blocks, recompute each block in backward.

The one home of the chunking machinery that products, harmonics and SFBC share: the
generic :func:`chunked_rows` wrapper and the helpers of the hand-written chunked backward
passes of the products (gradient buffers, shared-weight accumulation, and the
``create_graph=True`` fallback :func:`differentiable_gradients`, which both use).

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

__all__ = [
    "block_rows",
    "chunked_rows",
    "chunked_aggregate",
    "differentiable_gradients",
    "gradient_buffers",
    "accumulate_shared",
    "needs_autograd",
    "chunks",
]


#: Per-row intermediates of the chunked functions, as a multiple of their row inputs'
#: bytes (products expand a row to every path; a conservative bound for the budget).
EXPANSION = 32
#: Fraction of the accelerator's memory one block's intermediates may take.
MEMORY_FRACTION = 0.25


def block_rows(
    rows: int,
    row_bytes: int,
    device: torch.device | str,
    cpu_rows: int,
    memory_bytes: int | None = None,
) -> int:
    r"""Rows per block: the cache-sized ``cpu_rows`` on CPU; on an accelerator, all
    ``rows`` unless their intermediates (``EXPANSION`` x ``row_bytes`` each) would exceed
    ``MEMORY_FRACTION`` of the device's memory (``memory_bytes``, its total memory by
    default), then as many as fit.  So on a GPU the Python loop over blocks runs once
    unless memory demands more (the cache-sized blocks that help a CPU would cost
    thousands of kernel launches there).

    The answer depends only on the arguments and the device, never on how much memory is
    free at the moment: a forward pass and its backward must split alike (reading the
    free memory, which the forward itself lowers, split 1M edges differently in the two
    and broke the products on an H200).
    """
    device = torch.device(device)
    if device.type == "cpu":
        return cpu_rows
    if memory_bytes is None:
        memory_bytes = _device_bytes(device)
    fit = int(MEMORY_FRACTION * memory_bytes) // max(EXPANSION * row_bytes, 1)
    return max(rows, 1) if fit >= rows else max(fit, 1)


def _device_bytes(device: torch.device) -> int:
    """Total memory of ``device`` (CUDA: its properties; while compiling, or for other
    accelerators, 16 GiB is assumed)."""
    if device.type == "cuda" and not torch.compiler.is_compiling():
        return torch.cuda.get_device_properties(device).total_memory
    return 16 << 30


def _row_bytes(*tensors: Tensor | None) -> int:
    """Bytes of one row of each row-wise tensor, summed."""
    return sum(t[:1].numel() * t.element_size() for t in tensors if t is not None and t.dim() > 0)


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
            return None, None, None, *differentiable_gradients(ctx.fn, tensors, needs, grad)
        n, size = ctx.num_rowwise, ctx.chunk_size
        rows = tensors[0].shape[0]
        # row-wise gradients are written block by block (no zero fill of, e.g., a per-edge
        # weight gradient); shared ones are summed
        result = [
            (torch.empty_like if k < n else torch.zeros_like)(t) if need else None
            for k, (t, need) in enumerate(zip(tensors, needs, strict=True))
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
                    if k < n:  # this block does not depend on it
                        result[k][start : start + size] = 0
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
    ``chunk_size`` is the CPU block; on a GPU, :func:`block_rows` decides.
    """
    rows = rowwise[0].shape[0]
    chunk_size = block_rows(rows, _row_bytes(*rowwise), rowwise[0].device, chunk_size)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (*rowwise, *shared))):
        if rows <= chunk_size:
            return fn(*rowwise, *shared)
        return torch.cat(
            [
                fn(*(t[s : s + chunk_size] for t in rowwise), *shared)
                for s in range(0, rows, chunk_size)
            ]
        )
    return _ChunkedRows.apply(fn, chunk_size, len(rowwise), *rowwise, *shared)


def differentiable_gradients(
    forward, tensors: tuple[Tensor | None, ...], needs: tuple[bool, ...], grad: Tensor
) -> tuple[Tensor | None, ...]:
    """Gradients of ``forward(*tensors)`` as a graph (``create_graph=True``): the fallback of
    the custom backward passes when a second derivative is requested."""
    inputs = [t for t, need in zip(tensors, needs, strict=True) if need and t is not None]
    with torch.enable_grad():
        out = forward(*tensors)
        grads = torch.autograd.grad(out, inputs, grad, create_graph=True, allow_unused=True)
    grads = iter(
        torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads, strict=True)
    )
    return tuple(
        next(grads) if need and t is not None else None
        for t, need in zip(tensors, needs, strict=True)
    )


def gradient_buffers(
    tensors: tuple[Tensor | None, ...],
    needs: tuple[bool, ...],
    zeroed: bool | tuple[bool, ...] = True,
) -> list[Tensor | None]:
    """Full-batch gradients that chunked backward passes write into (no final
    concatenation), zeroed for passes that accumulate (``zeroed``: one flag, or one per
    tensor); ``None`` where no gradient is needed or the tensor is shared by the batch
    (batch 1: its chunk gradients are summed instead)."""
    batch = tensors[0].shape[0]
    flags = zeroed if isinstance(zeroed, tuple) else (zeroed,) * len(tensors)
    return [
        (torch.zeros_like if zero else torch.empty_like)(t)
        if need and t is not None and (t.shape[0] > 1 or batch == 1)
        else None
        for t, need, zero in zip(tensors, needs, flags, strict=True)
    ]


def accumulate_shared(
    shared: list[Tensor | None], buffers: list[Tensor | None], grads: tuple[Tensor | None, ...]
) -> None:
    """Sum the chunk gradients of tensors shared by the batch (no buffer) into ``shared``."""
    for k, (buffer, g) in enumerate(zip(buffers, grads, strict=True)):
        if buffer is None and g is not None:
            part = g.sum(0, keepdim=True)
            shared[k] = part if shared[k] is None else shared[k] + part


def needs_autograd(*tensors: Tensor | None) -> bool:
    """Whether a custom backward is needed (grad mode on and some input requires grad)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def chunks(size: int, *tensors: Tensor | None) -> list[tuple[Tensor | None, ...]]:
    """Split along the batch in blocks of ``size``; tensors with batch 1 are shared."""
    n = tensors[0].shape[0]
    return [
        tuple(
            None if t is None else (t if t.shape[0] == 1 and n > 1 else t[i : i + size])
            for t in tensors
        )
        for i in range(0, n, size)
    ]


class _ChunkedAggregate(torch.autograd.Function):
    """``out[dst] += fn(x[src], *edgewise, *shared)`` over blocks of edges; backward
    recomputes each block, so no per-edge intermediate outlives its block."""

    @staticmethod
    def forward(ctx, fn, chunk_size, num_edgewise, num_nodes, src, dst, x, *tensors):  # noqa: D102
        ctx.fn, ctx.chunk_size, ctx.num_edgewise = fn, chunk_size, num_edgewise
        ctx.save_for_backward(src, dst, x, *tensors)
        edgewise, shared = tensors[:num_edgewise], tensors[num_edgewise:]
        out = None
        for start in range(0, max(src.shape[0], 1), chunk_size):
            block = slice(start, start + chunk_size)
            messages = fn(x.index_select(0, src[block]), *(t[block] for t in edgewise), *shared)
            if out is None:
                out = messages.new_zeros(num_nodes, *messages.shape[1:])
            out.index_add_(0, dst[block], messages)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        src, dst, x, *tensors = ctx.saved_tensors
        needs = ctx.needs_input_grad[6:]
        n, size = ctx.num_edgewise, ctx.chunk_size
        if torch.is_grad_enabled():  # create_graph=True: differentiate the plain form

            def plain(x, *tensors):
                messages = ctx.fn(x.index_select(0, src), *tensors)
                return messages.new_zeros(grad.shape).index_add(0, dst, messages)

            grads = differentiable_gradients(plain, (x, *tensors), needs, grad)
            return (None,) * 6 + tuple(grads)
        result = [
            torch.zeros_like(t) if need else None
            for t, need in zip((x, *tensors), needs, strict=True)
        ]
        for start in range(0, src.shape[0], size):  # no edges: zero gradients
            block = slice(start, start + size)
            leaves = [x.index_select(0, src[block]).requires_grad_(needs[0])]
            leaves += [t[block].detach().requires_grad_(needs[1 + k]) for k, t in
                       enumerate(tensors[:n])]  # fmt: skip
            leaves += [t.detach().requires_grad_(needs[1 + n + k]) for k, t in
                       enumerate(tensors[n:])]  # fmt: skip
            wanted = [k for k, leaf in enumerate(leaves) if leaf.requires_grad]
            with torch.enable_grad():
                messages = ctx.fn(*leaves)
                parts = torch.autograd.grad(
                    messages, [leaves[k] for k in wanted], grad.index_select(0, dst[block]),
                    allow_unused=True,
                )  # fmt: skip
            for k, part in zip(wanted, parts, strict=True):
                if part is None:
                    continue
                if k == 0:
                    result[0].index_add_(0, src[block], part)
                elif k <= n:
                    result[k][block] = part
                else:
                    result[k] += part
        return (None,) * 6 + tuple(result)


def chunked_aggregate(
    fn: Callable[..., Tensor],
    x: Tensor,
    edge_index: Tensor,
    edgewise: tuple[Tensor, ...] = (),
    shared: tuple[Tensor, ...] = (),
    num_nodes: int | None = None,
    chunk_size: int = 4096,
) -> Tensor:
    r"""Message passing :math:`y_i = \sum_{j \to i} f(x_j, e_{ji})` in blocks of edges.

    ``fn(x_src, *edgewise_rows, *shared)`` returns one message per edge; ``edgewise``
    tensors have one row per edge, ``shared`` ones (parameters) are passed whole and must be
    what ``fn`` uses (call modules functionally, e.g. ``torch.func.functional_call``).
    Memory: only the inputs are kept for backward, which recomputes each block; the
    ``[E, ...]`` messages never exist at once.  Exact in value and gradient, second
    derivatives included (they differentiate the plain form).
    """
    src, dst = edge_index
    num_nodes = x.shape[0] if num_nodes is None else num_nodes
    edges = src.shape[0]
    chunk_size = block_rows(edges, _row_bytes(x, *edgewise), x.device, chunk_size)
    return _ChunkedAggregate.apply(
        fn, chunk_size, len(edgewise), num_nodes, src, dst, x, *edgewise, *shared
    )
