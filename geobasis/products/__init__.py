"""Equivariant bilinear products of spherical-channel tensors behind one interface.

=========================  ==========================================  ===============
class                      computes                                    cost per channel
=========================  ==========================================  ===============
``ClebschGordanProduct``   every path ``|l1-l2| <= l <= l1+l2``,       O(L^5)
                           odd ones included, one weight per path
``GauntGridProduct``       pointwise product on an S^2 quadrature      O(L^4)
                           grid, per-degree weights before and after
``GauntFourierProduct``    the same product through 2-D Fourier        O(L^3)
                           coefficients and FFTs
``SO2Product``             the CG product with edge harmonics as       O(L^3)
                           per-m SO(2) maps in the edge frame (eSCN)
``GauntBracketProduct``    the odd paths on the grid through the       O(L^4)
                           spherical Poisson bracket; ``paths="all"``
                           adds the pointwise product (every path)
=========================  ==========================================  ===============

By name: ``geobasis.products.make(name, ...)`` and :data:`PRODUCTS` (``registry.py``).
See ``docs/products.md`` for what each can and cannot express and measured speed.
"""

from geobasis.o3.coupling import coupling_paths
from geobasis.products._base import EquivariantProduct
from geobasis.products._e3nn import e3nn_equivalent
from geobasis.products._gaunt import GauntProduct
from geobasis.products.clebsch_gordan import ClebschGordanProduct
from geobasis.products.gaunt_bracket import GauntBracketProduct, bracket_factor
from geobasis.products.gaunt_fourier import GauntFourierProduct, sh_to_fourier
from geobasis.products.gaunt_grid import GauntGridProduct
from geobasis.products.registry import PRODUCTS, make
from geobasis.products.so2 import SO2Product

__all__ = [
    "GauntBracketProduct",
    "bracket_factor",
    "EquivariantProduct",
    "ClebschGordanProduct",
    "GauntProduct",
    "GauntGridProduct",
    "GauntFourierProduct",
    "SO2Product",
    "sh_to_fourier",
    "coupling_paths",
    "e3nn_equivalent",
    "PRODUCTS",
    "make",
]
