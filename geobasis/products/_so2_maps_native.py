"""The SO(2) product's per-m maps as fused native CPU loops (``_so2_maps.c``), with the
same contract as :func:`geobasis.products._so2_kernel._maps` and its backward.

PyTorch has no operation for a per-edge, per-channel matrix-vector product: its broadcast
multiply and sum write a temporary of twice the weights' size and read it back, and the
gradient of the weights is one more pass.  The C loops read every weight once per pass and
keep the sums in registers: 4-6x faster maps on one CPU thread (measured at L = 6-8).
They run where :func:`usable` says so (CPU tensors of float32 / float64 and a compiled
library, :func:`geobasis._native.library`); the PyTorch form is kept for everything else.
With several torch threads the edges are split between as many Python threads (ctypes
releases the GIL while the C code runs).
"""

from __future__ import annotations

import ctypes
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from geobasis._native import library

__all__ = ["usable", "block_table", "forward", "backward"]

_SOURCE = Path(__file__).with_name("_so2_maps.c")
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_EDGES_PER_THREAD = 32  # fewer per thread: one thread (the split costs ~20 us)
_POOL: list[ThreadPoolExecutor] = []

_I, _P = ctypes.c_int64, ctypes.c_void_p
_ARGUMENTS = {
    "forward": [_I, _I, _P, _I, _P, _I, _P, _I, _I, _P],
    "backward": [_I, _I, _P, _I, _P, _I, _P, _I, _P, _I, _P, _I, _P],
}


def _functions(dtype: torch.dtype) -> dict[str, object] | None:
    lib = library(_SOURCE)
    if lib is None:
        return None
    found = {}
    for kind, arguments in _ARGUMENTS.items():
        function = getattr(lib, f"so2_maps_{kind}_{_SUFFIX[dtype]}")
        function.argtypes, function.restype = arguments, None
        found[kind] = function
    return found


def usable(x: Tensor) -> bool:
    """Whether the native maps run for features ``x``: CPU, float32 or float64, and the
    library built (``GEOBASIS_NATIVE=0`` turns it off)."""
    return x.device.type == "cpu" and x.dtype in _SUFFIX and library(_SOURCE) is not None


def block_table(kernel_blocks: list[tuple]) -> Tensor:
    """``[n_m, 7]`` int64 (CPU, never moved) from the module's ``_kernel_blocks``: per ``m``,
    ``m``, first input row, first output row, ``n_in``, ``n_out``, first row of ``W1`` and
    of ``W2`` (``-1``: none)."""
    rows = [[m, rows_in[0], rows_out[0], n_in, n_out, -1 if w1 is None else w1[0],
             -1 if w2 is None else w2[0]]
            for m, rows_in, rows_out, n_in, n_out, w1, w2 in kernel_blocks]  # fmt: skip
    return torch.tensor(rows, dtype=torch.int64)


def forward(blocks: Tensor, x_m: Tensor, weight: Tensor, out: Tensor) -> None:
    """Writes the maps of ``x_m [B, R, C]`` (m-major rows) with ``weight [B or 1, S, C]``
    into the first rows of ``out [B, R_out + 1, C]`` (its rows past the maps' untouched)."""
    function = _functions(x_m.dtype)["forward"]
    shared = weight.shape[0] == 1 and x_m.shape[0] > 1
    w_stride = 0 if shared else weight[0].numel()
    channels = x_m.shape[2]

    def part(start: int, stop: int, _: Tensor | None) -> None:
        w = weight if shared else weight[start:stop]
        function(stop - start, channels, x_m[start:stop].data_ptr(), x_m.shape[1],
                 w.data_ptr(), w_stride, out[start:stop].data_ptr(), out.shape[1],
                 blocks.shape[0], blocks.data_ptr())  # fmt: skip

    _split(x_m.shape[0], part, None)


def backward(blocks: Tensor, x_m: Tensor, weight: Tensor, g_m: Tensor, grad_x: Tensor | None,
             grad_weight: Tensor | None, shared: bool) -> None:  # fmt: skip
    """Writes the gradients of :func:`forward` for the output gradient ``g_m [B, D_out, C]``:
    ``grad_x [B, R + 1, C]`` (its first ``R`` rows) and ``grad_weight`` (``[B, S, C]``
    written, or with ``shared`` weights ``[1, S, C]`` added to); ``None``: not wanted."""
    function = _functions(x_m.dtype)["backward"]
    w_stride = 0 if shared else weight[0].numel()
    channels = x_m.shape[2]

    def part(start: int, stop: int, accumulator: Tensor | None) -> None:
        w = weight if shared else weight[start:stop]
        gw = accumulator if shared else (None if grad_weight is None else grad_weight[start:stop])
        gx = None if grad_x is None else grad_x[start:stop]
        function(stop - start, channels, x_m[start:stop].data_ptr(), x_m.shape[1],
                 w.data_ptr(), w_stride, g_m[start:stop].data_ptr(), g_m.shape[1],
                 None if gx is None else gx.data_ptr(), 0 if gx is None else gx.shape[1],
                 None if gw is None else gw.data_ptr(), blocks.shape[0],
                 blocks.data_ptr())  # fmt: skip

    _split(x_m.shape[0], part, grad_weight if shared else None)


def _split(edges: int, part, accumulator: Tensor | None) -> None:
    """Runs ``part(start, stop, accumulator)`` on the edges, split between up to
    ``torch.get_num_threads()`` threads; each thread adds to its own copy of a shared
    ``accumulator``, summed at the end."""
    threads = max(1, min(torch.get_num_threads(), edges // _EDGES_PER_THREAD))
    if threads == 1:
        part(0, edges, accumulator)
        return
    bounds = [edges * k // threads for k in range(threads + 1)]
    copies = [None if accumulator is None else torch.zeros_like(accumulator)
              for _ in range(threads)]  # fmt: skip
    if not _POOL or _POOL[0]._max_workers < threads:
        _POOL[:] = [ThreadPoolExecutor(threads, thread_name_prefix="geobasis-native")]
    jobs = [_POOL[0].submit(part, bounds[k], bounds[k + 1], copies[k]) for k in range(threads)]
    for job in jobs:
        job.result()
    if accumulator is not None:
        accumulator += torch.stack(copies).sum(0)
