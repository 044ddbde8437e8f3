r"""Shared part of the Gaunt products: per-degree weights and the equivalent CG weights.

A Gaunt product is the pointwise product of two functions on the sphere,

.. math::

    f_i(\hat r) = \sum_{l m} w^{(i)}_{l c}\, x^{(i)}_{l m c}\, Y_l^m(\hat r), \qquad
    y_{l m c} = w^{(o)}_{l c} \int_{S^2} f_1 f_2\, Y_l^m\, d\Omega ,

with orthonormal ("integral") harmonics.  It equals the Clebsch–Gordan product restricted
to paths with even :math:`l_1 + l_2 + l` with path weights
:math:`w^{(1)}_{l_1} w^{(2)}_{l_2} w^{(o)}_{l}\, g(l_1, l_2, l)` where :math:`g` is
:func:`geobasis.o3.gaunt_factor` (Luo et al., 2024, Eq. 4).  A Gaunt product is therefore
symmetric in its inputs and cannot express the odd (antisymmetric, cross-product-like)
paths; "The Price of Freedom" (Xie, Daigavane, Kotak & Smidt, ICML 2025) measures this loss of
expressivity.

Weights (``weights="internal"`` or ``"external"``) have shape
``[L1 + 1 + L2 + 1 + L_out + 1, C]``: the degree weights of ``x1``, then of ``x2``, then of
the output.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geobasis.o3.coupling import coupling_paths, gaunt_factor
from geobasis.o3.layout import degree_index
from geobasis.products._base import EquivariantProduct

__all__ = ["GauntProduct"]


class GauntProduct(EquivariantProduct):
    """Base of the Gaunt products: weight layout, degree expansion, CG equivalence."""

    def __init__(
        self,
        lmax1: int,
        lmax2: int,
        lmax_out: int,
        channels: int | None = None,
        weights: str = "internal",
    ) -> None:
        super().__init__(lmax1, lmax2, lmax_out, channels, weights)
        self._init_weights(lmax1 + lmax2 + lmax_out + 3)
        # per-component positions of the degree weights inside the weight vector
        self.register_buffer("_index1", degree_index(lmax1), persistent=False)
        self.register_buffer("_index2", degree_index(lmax2) + lmax1 + 1, persistent=False)
        self.register_buffer(
            "_index_out", degree_index(lmax_out) + lmax1 + lmax2 + 2, persistent=False
        )

    def reset_parameters(self) -> None:
        """Internal degree weights start at one: the plain (pointwise) product."""
        if self.weight is not None:
            nn.init.ones_(self.weight)

    def split_weight(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component weights ``[B, D1, C]``, ``[B, D2, C]``, ``[B, D_out, C]``."""
        return (
            weight.index_select(1, self._index1),
            weight.index_select(1, self._index2),
            weight.index_select(1, self._index_out),
        )

    @property
    def paths(self) -> list[tuple[int, int, int]]:
        """The Clebsch–Gordan paths this product spans (even ``l1 + l2 + l``)."""
        return coupling_paths(self.lmax1, self.lmax2, self.lmax_out, "even")

    def clebsch_gordan_weights(self, weight: Tensor | None = None) -> Tensor:
        r"""Path weights ``[..., num_paths, C]`` (or ``[num_paths]`` without weights) for a
        ``ClebschGordanProduct(..., paths="even", path_normalization="none")`` that computes
        exactly this product.
        """
        if weight is None:
            weight = self.weight
        factors = torch.tensor([gaunt_factor(*p) for p in self.paths], dtype=torch.float64)
        if weight is None:
            return factors
        index = torch.tensor(
            [
                [l1, self.lmax1 + 1 + l2, self.lmax1 + self.lmax2 + 2 + l]
                for l1, l2, l in self.paths
            ],
            device=weight.device,
        )
        per_path = weight[..., index, :].prod(-2)  # [..., P, C]
        return per_path * factors.to(weight).unsqueeze(-1)
