"""Is the current code being traced (``torch.compile``, export) or transformed (``torch.func``)?

Custom autograd Functions without ``setup_context`` and kernels writing with ``out=``
cannot run there; the modules that use them switch to their plain-operation forms when
:func:`traced` is true (so ``torch.compile``, ``torch.func.grad`` and the exporter of
:mod:`geobasis.calculators.export` work end to end).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["traced", "plain_operations"]

_plain_depth = 0


def traced() -> bool:
    """True inside ``torch.compile``, a ``torch.func`` transform (``grad``, ``vmap``...)
    or a :func:`plain_operations` block."""
    if _plain_depth > 0 or torch.compiler.is_compiling():
        return True
    return torch._C._functorch.peek_interpreter_stack() is not None


@contextmanager
def plain_operations() -> Iterator[None]:
    """Within the block every module takes its plain-operation form (for tracers such as
    ``make_fx`` that :func:`traced` cannot detect)."""
    global _plain_depth
    _plain_depth += 1
    try:
        yield
    finally:
        _plain_depth -= 1
