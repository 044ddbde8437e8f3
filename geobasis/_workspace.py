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

import math
import threading

import torch
from torch import Tensor

__all__ = ["MAX_BYTES", "scratch", "release"]

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
