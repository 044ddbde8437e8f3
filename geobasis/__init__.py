"""geobasis: geometric bases and equivariant building blocks for graphs and point clouds.

Subpackages are imported on first use (``geobasis.o3``, ``geobasis.radial``,
``geobasis.graph``, ``geobasis.products``, ``geobasis.frames``, ``geobasis.pe``,
``geobasis.nn``, ``geobasis.data``, ``geobasis.testing``), so ``import geobasis`` stays
fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = [
    "o3",
    "radial",
    "graph",
    "products",
    "frames",
    "pe",
    "nn",
    "data",
    "testing",
    "typing",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        return importlib.import_module(f"geobasis.{name}")
    raise AttributeError(f"module 'geobasis' has no attribute {name!r}")
