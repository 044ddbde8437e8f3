"""Spherical harmonics of low degree in C on CPU (``_harmonics.c``): the monomial form of
:mod:`geobasis.o3._harmonic_polynomials`, fused per tile of 16 vectors.

PyTorch's form of ``M(v) C`` is a dozen passes over ``[N]``-long rows and a GEMM whose
output rows are only ``(lmax+1)**2`` long; the C loops keep a tile of vectors' monomials
in registers and write each row of harmonics once.  Forward and the backward to the
vectors (first derivatives); :class:`~geobasis.o3._harmonic_polynomials` keeps its
PyTorch form for CUDA, tracing, second derivatives, degrees above :data:`MAX_LMAX` and
machines without a C compiler.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

from geobasis._native import kernels, parallel
from geobasis._workspace import large_empty

__all__ = ["MAX_LMAX", "usable", "forward", "backward"]

#: Highest degree of the C kernel (its tiles are sized for it).
MAX_LMAX = 8

_SOURCE = Path(__file__).with_name("_harmonics.c")
_VECTORS_PER_THREAD = 4096
_I, _P = ctypes.c_int64, ctypes.c_void_p
_ARGUMENTS = {
    "harmonics_forward": [_I, _I, _P, _P, _I, _I, _P],
    "harmonics_backward": [_I, _I, _P, _P, _I, _I, _P, _P],
}


def _library(dtype: torch.dtype) -> ctypes.CDLL | None:
    return kernels(_SOURCE, dtype, _ARGUMENTS)


def usable(vectors: Tensor, lmax: int) -> bool:
    """Whether the C kernel runs: CPU, float32 or float64, ``lmax <= MAX_LMAX`` and the
    library built (``GEOBASIS_NATIVE=0`` turns it off)."""
    return (vectors.device.type == "cpu" and lmax <= MAX_LMAX
            and _library(vectors.dtype) is not None)  # fmt: skip


def forward(lmax: int, vectors: Tensor, table: Tensor, normalize: bool) -> Tensor:
    """``[N, (lmax+1)**2]`` from ``vectors [N, 3]`` and the monomial table ``table
    [num_monomials, >= (lmax+1)**2]`` (same dtype)."""
    vectors, table = vectors.contiguous(), table.contiguous()
    out = large_empty((vectors.shape[0], (lmax + 1) ** 2), vectors)
    function = _library(vectors.dtype).harmonics_forward

    def part(start: int, stop: int, _) -> None:
        function(stop - start, lmax, vectors[start:stop].data_ptr(), table.data_ptr(),
                 table.shape[1], int(normalize), out[start:stop].data_ptr())  # fmt: skip

    parallel(vectors.shape[0], part, None, _VECTORS_PER_THREAD)
    return out


def backward(lmax: int, vectors: Tensor, table: Tensor, normalize: bool, grad: Tensor) -> Tensor:
    """The gradient ``[N, 3]`` of the vectors for the output gradient ``grad``."""
    vectors, table, grad = vectors.contiguous(), table.contiguous(), grad.contiguous()
    out = large_empty(vectors.shape, vectors)
    function = _library(vectors.dtype).harmonics_backward

    def part(start: int, stop: int, _) -> None:
        function(stop - start, lmax, vectors[start:stop].data_ptr(), table.data_ptr(),
                 table.shape[1], int(normalize), grad[start:stop].data_ptr(),
                 out[start:stop].data_ptr())  # fmt: skip

    parallel(vectors.shape[0], part, None, _VECTORS_PER_THREAD)
    return out
