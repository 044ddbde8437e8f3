"""Scratch buffers reused from call to call for large temporaries on CPU.

A temporary of a few MiB that is allocated and freed on every call (the monomials of the
harmonics, for instance) goes back to the operating system between calls on glibc, so
each call pays the page faults of fresh memory again: about 0.3 ms per MiB on the
development machine, as much as the arithmetic itself.  :func:`scratch` hands out views
of one buffer per name instead, kept per thread and grown when needed.

Only for temporaries that die inside the function that asked for them: never return a
scratch tensor or save it for backward (the next call with the same name overwrites it).
On accelerators, whose caching allocators already reuse memory, and above
:data:`MAX_BYTES` it simply allocates.  What stays allocated is one buffer per name, dtype
and inference mode, at most :data:`MAX_BYTES` each (the harmonics of 100k vectors at
lmax 3 keep 16 MB); :func:`release` frees this thread's.
"""

from __future__ import annotations

import ctypes
import math
import sys
import threading
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["MAX_BYTES", "scratch", "release", "large_empty"]

#: Largest scratch buffer kept, in bytes; bigger requests are plain allocations.
MAX_BYTES = 64 << 20

_local = threading.local()


def scratch(name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised ``shape`` tensor with ``like``'s dtype and device, whose memory
    is reused by the next request for ``name`` on this thread (see the module notes)."""
    numel = math.prod(shape)
    size = numel * like.element_size()
    if like.device.type != "cpu" or size > MAX_BYTES:
        return like.new_empty(shape)
    # inference tensors cannot be written outside inference mode, nor the converse
    key = (name, like.dtype, torch.is_inference_mode_enabled())
    buffers = _local.__dict__.setdefault("buffers", {})
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < numel:
        buffer = like.new_empty(numel)
        buffers[key] = buffer
    return buffer[:numel].view(shape)


def release() -> None:
    """Free this thread's scratch buffers (they are made again on the next request)."""
    _local.__dict__.pop("buffers", None)


#: Fresh CPU tensors from this size on are advised onto transparent huge pages.
HUGE_BYTES = 8 << 20
_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14  # Linux


def _huge_page_advice():
    """``madvise`` from the C library when Linux gives huge pages on advice only
    (``transparent_hugepage/enabled`` is ``[madvise]``), else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
        if "[madvise]" not in mode:
            return None
        advise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    advise.argtypes, advise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return advise


_ADVISE = _huge_page_advice()


def large_empty(shape: tuple[int, ...], like: Tensor) -> Tensor:
    r"""An uninitialised ``shape`` tensor like ``like`` that the caller fills once and
    returns (a gradient, an output): on Linux, from :data:`HUGE_BYTES` on, its memory is
    advised onto 2 MiB transparent huge pages before it is touched, so that writing it
    costs one page fault per 2 MiB instead of one per 4 KiB (a fresh 365 MB weight
    gradient: about 0.2 s of faults on the development machine, most of the SO(2)
    product's backward at L = 8).  Elsewhere, and where the system gives huge pages
    always or never, a plain ``new_empty``."""
    out = like.new_empty(shape)
    size = out.numel() * out.element_size()
    if _ADVISE is None or like.device.type != "cpu" or size < HUGE_BYTES:
        return out
    start = -(-out.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE
    stop = (out.data_ptr() + size) // _HUGE_PAGE * _HUGE_PAGE
    if stop > start:
        _ADVISE(start, stop - start, _MADV_HUGEPAGE)
    return out
