"""The SO(2) product edge by edge in C (``_so2_product.c``) on CPU, with its backward.

PyTorch has no operation for what the product does per edge: rotate ``[2l+1, C]`` blocks
by that edge's own matrices and apply per-edge, per-channel ``[n_out, n_in]`` maps.  Its
batched form (:mod:`geobasis.products._so2_kernel`) writes the rotated features, a
broadcast temporary twice the weights' size and the reordered rows to memory and reads
them back.  The C loops keep one edge's rotated features in cache, read every weight once
per pass and rotate each degree with its own ``2l+1`` rows.

Used by :class:`~geobasis.products.SO2Product` where :func:`usable` says so (CPU tensors of
float32 / float64 and a library built by :func:`geobasis._native.library`); its batched
PyTorch kernel runs on CUDA and without a compiler, its plain form under
``torch.compile`` and for second derivatives.  A gradient of the edge directions goes
through the gradient of the frame angles from C and autograd of the angles' construction.  With
several torch threads the edges are split between as many Python threads (ctypes
releases the GIL while C runs).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

from geobasis._chunked import differentiable_gradients
from geobasis._native import kernels, parallel
from geobasis._workspace import large_empty

__all__ = ["usable", "weight_rows", "so2_native"]

_SOURCE = Path(__file__).with_name("_so2_product.c")
_EDGES_PER_THREAD = 16  # fewer per thread: one thread (a split costs ~20 us)

_I, _P = ctypes.c_int64, ctypes.c_void_p
_ARGUMENTS = {
    "so2_forward": [_I, _I, _I, _I, _P, _P, _P, _P, _I, _P, _P],
    "so2_backward": [_I, _I, _I, _I, _P, _P, _P, _P, _I, _P, _P, _P, _P, _P],
}


def _library(dtype: torch.dtype) -> ctypes.CDLL | None:
    return kernels(_SOURCE, dtype, _ARGUMENTS, dict.fromkeys(_ARGUMENTS, ctypes.c_int))


def _check(status: int) -> None:
    if status:
        raise MemoryError("SO2Product: the C kernel could not allocate its per-edge scratch "
                          "memory; free memory or set GEOBASIS_NATIVE=0")  # fmt: skip


def usable(x: Tensor) -> bool:
    """Whether the C product runs for features ``x``: CPU, float32 or float64, and the
    library built (``GEOBASIS_NATIVE=0`` turns it off)."""
    return x.device.type == "cpu" and _library(x.dtype) is not None


def weight_rows(blocks: list[tuple], orders: int) -> Tensor:
    """``[2 orders]`` int64 (CPU, never moved): per ``m``, the first weight row of ``W1``
    and of ``W2`` (``-1``: none) from the module's ``_blocks``."""
    rows = torch.full((orders, 2), -1, dtype=torch.int64)
    for m, _, _, _, w1, w2 in blocks:
        for kind, where in enumerate((w1, w2)):
            if where is not None:
                rows[m, kind] = where[0]
    return rows.reshape(-1)


def _pointer(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _SO2Native(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x1, direction, weight, module):  # noqa: D102
        angles = _angles(module, direction)
        out = large_empty((x1.shape[0], module.dim_out, x1.shape[2]), x1)
        shared = weight.shape[0] == 1 and x1.shape[0] > 1
        forward = _library(x1.dtype).so2_forward

        def part(start: int, stop: int, _) -> None:
            w = weight if shared else weight[start:stop]
            status = forward(stop - start, module.lmax1, module.lmax_out, x1.shape[2],
                    x1[start:stop].data_ptr(), angles[start:stop].data_ptr(),
                    module._tilt_terms.data_ptr(), w.data_ptr(), 0 if shared else weight[0].numel(),
                    module._native_rows.data_ptr(), out[start:stop].data_ptr())  # fmt: skip
            _check(status)

        parallel(x1.shape[0], part, None, _EDGES_PER_THREAD)
        ctx.module = module
        ctx.save_for_backward(x1, direction, weight)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x1, direction, weight = ctx.saved_tensors
        module, needs = ctx.module, ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True: differentiate the plain form
            grads = differentiable_gradients(module._plain_edges, (x1, direction, weight), needs,
                                             grad)  # fmt: skip
            return *grads, None
        grad = grad.contiguous()
        shared = weight.shape[0] == 1 and x1.shape[0] > 1
        grad_x1 = large_empty(x1.shape, x1) if needs[0] else None
        angles = _angles(module, direction)
        grad_angles = torch.empty_like(angles) if needs[1] else None
        grad_w = None
        if needs[2]:
            grad_w = torch.zeros_like(weight) if shared else large_empty(weight.shape, weight)
        backward = _library(x1.dtype).so2_backward

        def part(start: int, stop: int, accumulator: Tensor | None) -> None:
            rows = slice(start, stop)
            w = weight if shared else weight[rows]
            gw = accumulator if shared else (None if grad_w is None else grad_w[rows])
            status = backward(stop - start, module.lmax1, module.lmax_out, x1.shape[2],
                     x1[rows].data_ptr(), angles[rows].data_ptr(), module._tilt_terms.data_ptr(),
                     w.data_ptr(), 0 if shared else weight[0].numel(),
                     module._native_rows.data_ptr(), grad[rows].data_ptr(),
                     _pointer(None if grad_x1 is None else grad_x1[rows]), _pointer(gw),
                     _pointer(None if grad_angles is None else grad_angles[rows]))  # fmt: skip
            _check(status)

        parallel(x1.shape[0], part, grad_w if shared else None, _EDGES_PER_THREAD)
        grad_direction = None
        if needs[1]:  # from the angles' gradient (C) through their construction
            leaf = direction.detach().requires_grad_()
            with torch.enable_grad():
                (grad_direction,) = torch.autograd.grad(_angles(module, leaf), leaf, grad_angles)
        return grad_x1, grad_direction, grad_w, None


def _angles(module, direction: Tensor) -> Tensor:
    r"""``[E, 4 L + 3]``: :math:`\cos k\beta` (``k = 0..L``), :math:`\sin k\beta`
    (``k = 1..L``), :math:`\cos k\alpha, \sin k\alpha` (``k = 0..L``) of the edges'
    frames (``SO2Product._angle_features``), from which the C code builds the rotations."""
    return torch.cat(module._angle_features(direction), dim=1).contiguous()


def so2_native(module, x1: Tensor, direction: Tensor, weight: Tensor) -> Tensor:
    """The SO(2) product of ``module`` on ``x1 [E, D1, C]``, edge directions
    ``direction [E, 3]`` and ``weight [E or 1, S, C]`` (CPU, see :func:`usable`)."""
    return _SO2Native.apply(x1.contiguous(), direction, weight.contiguous(), module)
