r"""Gaunt product on an S² quadrature grid ("The Price of Freedom", Xie et al., 2025).

Both inputs are evaluated on a Gauss–Legendre x uniform grid, multiplied pointwise and
projected back:

.. math::

    y_{l m c} = w^{(o)}_{l c} \sum_{g} \omega_g\, Y_l^m(\hat r_g)\,
        f_1(\hat r_g)\, f_2(\hat r_g), \qquad
    f_i(\hat r_g) = \sum_{l' m'} w^{(i)}_{l' c}\, x^{(i)}_{l' m' c}\, Y_{l'}^{m'}(\hat r_g).

The integrand is a spherical polynomial of degree :math:`L_1 + L_2 + L_{out}`, so a grid of
:math:`\lceil (L_1+L_2+L_{out}+1)/2 \rceil` polar by :math:`L_1+L_2+L_{out}+1` azimuthal
nodes makes the result exact (equal to the Gaunt-weighted Clebsch–Gordan product).  The
transforms are dense matrices ``[G, (L+1)**2]`` applied as large matrix products, which is
:math:`O(L^4)` per channel but runs at matrix-multiply speed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from geobasis.o3._spherical_harmonics import spherical_harmonics
from geobasis.o3.s2grid import s2_grid
from geobasis.products._base import _ChunkedProduct, chunks
from geobasis.products._gaunt import GauntProduct

__all__ = ["GauntGridProduct"]


class GauntGridProduct(GauntProduct):
    r"""Pointwise product of two spherical functions, exact on a quadrature grid.

    Args:
        lmax1, lmax2, lmax_out: band limits of ``x1``, ``x2`` and the output.
        channels: number of channels ``C`` (needed for weights).
        weights: ``"internal"`` (per-degree weights ``[L1+L2+L_out+3, C]``, initialised to
            one), ``"external"`` (passed to ``forward``, ``[..., L1+L2+L_out+3, C]``) or
            ``"none"`` (the plain projected product).
        res_beta, res_alpha: grid size; the defaults are the smallest exact grid.  Smaller
            grids are allowed (approximate, aliased); a warning-free exact check is
            :attr:`is_exact`.

    Shapes: ``x1 [..., (L1+1)**2, C]``, ``x2 [..., (L2+1)**2, C]`` or ``[..., (L2+1)**2]``,
    output ``[..., (L_out+1)**2, C]``.
    """

    def __init__(
        self,
        lmax1: int,
        lmax2: int,
        lmax_out: int,
        channels: int | None = None,
        weights: str = "internal",
        *,
        res_beta: int | None = None,
        res_alpha: int | None = None,
    ) -> None:
        super().__init__(lmax1, lmax2, lmax_out, channels, weights)
        degree = lmax1 + lmax2 + lmax_out
        self.res_beta = math.ceil((degree + 1) / 2) if res_beta is None else int(res_beta)
        self.res_alpha = degree + 1 if res_alpha is None else int(res_alpha)
        points, quadrature = s2_grid(self.res_beta, self.res_alpha)
        dtype = torch.get_default_dtype()
        lmax = max(lmax1, lmax2, lmax_out)
        harmonics = spherical_harmonics(lmax, points)  # float64, [G, (lmax+1)**2]
        self.register_table("_to_grid1", harmonics[:, : self.dim1])
        self.register_table("_to_grid2", harmonics[:, : self.dim2])
        projection = (harmonics[:, : self.dim_out] * quadrature[:, None]).t()
        self.register_table("_from_grid", projection.contiguous())
        degree_sum = torch.zeros(self.dim2, lmax2 + 1, dtype=dtype)  # [D2, L2+1] 0/1
        for l in range(lmax2 + 1):
            degree_sum[l * l : (l + 1) ** 2, l] = 1
        self.register_buffer("_degree_sum", degree_sum, persistent=False)
        self.chunk_size = 256  # batch elements per block: grid values stay in cache

    @property
    def is_exact(self) -> bool:
        """Whether the grid integrates degree ``L1 + L2 + L_out`` exactly."""
        degree = self.lmax1 + self.lmax2 + self.lmax_out
        return min(2 * self.res_beta - 1, self.res_alpha - 1) >= degree

    def _chunks(self, *tensors: Tensor | None) -> list[tuple[Tensor | None, ...]]:
        return chunks(self.chunk_size, *tensors)

    def _product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        return _ChunkedProduct.apply(self, x1, x2, weight)

    def _plain_product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        if weight is None:
            w1 = w2 = w_out = None
        else:
            w1, w2, w_out = self.split_weight(weight)  # per component
            x1 = x1 * w1
        f1 = torch.matmul(self._to_grid1, x1)  # [B, G, C]
        if x2.dim() == 3:
            f2 = torch.matmul(self._to_grid2, x2 if w2 is None else x2 * w2)  # [B, G, C]
        elif w2 is None:
            f2 = torch.matmul(x2, self._to_grid2.t()).unsqueeze(-1)  # [B, G, 1]
        else:
            # degree weights on a single-channel x2: grid values of each degree are
            # channel-free, then one small matrix product per batch element mixes them
            per_degree = torch.matmul(x2.unsqueeze(1) * self._to_grid2, self._degree_sum)
            f2 = torch.matmul(per_degree, weight[:, self.lmax1 + 1 : self.lmax1 + self.lmax2 + 2])
        out = torch.matmul(self._from_grid, f1 * f2)  # [B, D_out, C]
        return out if w_out is None else out * w_out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", res_beta={self.res_beta}, res_alpha={self.res_alpha}"
