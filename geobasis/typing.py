"""Optional accelerators, probed once at import; never required.

``WITH_TORCH_SCATTER``: torch-scatter is importable (PyG's ``scatter`` then uses it
where it helps).  ``WITH_CUEQUIVARIANCE``: NVIDIA's cuequivariance-torch is importable.
``WITH_CUDA``: a CUDA device is visible to torch.
"""

from __future__ import annotations

import importlib.util

import torch

__all__ = ["WITH_TORCH_SCATTER", "WITH_CUEQUIVARIANCE", "WITH_CUDA"]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


WITH_TORCH_SCATTER: bool = _has("torch_scatter")
WITH_CUEQUIVARIANCE: bool = _has("cuequivariance_torch")
WITH_CUDA: bool = torch.cuda.is_available()
