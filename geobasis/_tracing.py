"""Is the current code being traced (``torch.compile``) or transformed (``torch.func``)?

Custom autograd Functions without ``setup_context`` and kernels writing with ``out=``
cannot run there; the modules that use them switch to their plain-operation forms when
:func:`traced` is true (so ``torch.compile`` and ``torch.func.grad`` work end to end,
as the compiled force-training step needs).
"""

from __future__ import annotations

import torch

__all__ = ["traced"]


def traced() -> bool:
    """True inside ``torch.compile`` or a ``torch.func`` transform (``grad``, ``vmap``...)."""
    if torch.compiler.is_compiling():
        return True
    return torch._C._functorch.peek_interpreter_stack() is not None
