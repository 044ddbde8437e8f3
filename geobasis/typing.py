"""Probes of the optional capabilities of this machine, run once at import; never required.

``WITH_CUDA``: a CUDA device is visible to torch (the trainer checks ``device='cuda'``
against it).  ``WITH_CPU_COMPILER``: a C++ compiler and the Python headers exist, which
``torch.compile`` (Inductor) needs on CPU (:meth:`geobasis.nn.AtomisticModel.compile_forces`
checks it).  ``WITH_VESIN``: the ``vesin`` neighbour list is installed
(:func:`geobasis.graph.radius_graph` uses it on CPU for large graphs).  torch-scatter, when
installed, is used by PyG's ``scatter`` by itself.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sysconfig

import torch

__all__ = ["WITH_CUDA", "WITH_CPU_COMPILER", "WITH_VESIN"]

WITH_CUDA: bool = torch.cuda.is_available()


def _has_cpu_compiler() -> bool:
    compilers = [os.environ.get("CXX", ""), "c++", "g++", "clang++"]
    header = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    return any(c and shutil.which(c) for c in compilers) and os.path.exists(header)


WITH_CPU_COMPILER: bool = _has_cpu_compiler()

WITH_VESIN: bool = importlib.util.find_spec("vesin") is not None
