"""The products by name: what ``EquivariantConv(product=...)``, the models and
``geobasis train --product`` choose from.

A new product is one module plus one line in :data:`PRODUCTS`.  Every entry is an
O(3)-equivariant product (natural parity), so any of them can replace another in a model.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from geobasis.products._base import EquivariantProduct
from geobasis.products.clebsch_gordan import ClebschGordanProduct
from geobasis.products.gaunt_fourier import GauntFourierProduct
from geobasis.products.gaunt_grid import GauntGridProduct
from geobasis.products.so2 import SO2Product

__all__ = ["PRODUCTS", "make"]

#: name -> constructor ``(lmax1, lmax2, lmax_out, channels, weights=...)``.
PRODUCTS: dict[str, Callable[..., EquivariantProduct]] = {
    "cg": partial(ClebschGordanProduct, paths="even"),  # even paths: O(3), natural parity
    "gaunt_grid": GauntGridProduct,
    "gaunt_fourier": GauntFourierProduct,
    "so2": SO2Product,  # even SO(2) maps: O(3), natural parity; x2 = edge harmonics
}


def make(
    name: str,
    lmax1: int,
    lmax2: int,
    lmax_out: int,
    channels: int | None,
    weights: str = "external",
) -> EquivariantProduct:
    """The product registered as ``name`` (per-edge ``"external"`` weights by default).

    Example: ``make("gaunt_grid", 2, 2, 2, 32)`` is ``GauntGridProduct(2, 2, 2, 32,
    weights="external")``.
    """
    if name not in PRODUCTS:
        raise ValueError(f"product: unknown product {name!r}; choose one of {sorted(PRODUCTS)}")
    return PRODUCTS[name](lmax1, lmax2, lmax_out, channels, weights=weights)
