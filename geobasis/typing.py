"""Optional accelerators, probed once at import; never required.

``WITH_TORCH_SCATTER``: torch-scatter is importable (PyG's ``scatter`` then uses it
where it helps).  ``WITH_CUEQUIVARIANCE``: NVIDIA's cuequivariance-torch is importable.
``WITH_CUDA``: a CUDA device is visible to torch.  ``WITH_CPU_COMPILER``: a C++ compiler
and the Python headers exist, which ``torch.compile`` (Inductor) needs on CPU.
"""

from __future__ import annotations

import importlib.util

import torch

__all__ = ["WITH_TORCH_SCATTER", "WITH_CUEQUIVARIANCE", "WITH_CUDA", "WITH_CPU_COMPILER"]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


WITH_TORCH_SCATTER: bool = _has("torch_scatter")
WITH_CUEQUIVARIANCE: bool = _has("cuequivariance_torch")
WITH_CUDA: bool = torch.cuda.is_available()


def _has_cpu_compiler() -> bool:
    import os
    import shutil
    import sysconfig

    compilers = [os.environ.get("CXX", ""), "c++", "g++", "clang++"]
    header = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    return any(c and shutil.which(c) for c in compilers) and os.path.exists(header)


WITH_CPU_COMPILER: bool = _has_cpu_compiler()
