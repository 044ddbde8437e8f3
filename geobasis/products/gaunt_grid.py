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
        if res_beta is None:  # smallest exact grid, rounded up to an even number of rings
            res_beta = math.ceil((degree + 1) / 2)
            res_beta += res_beta % 2
        self.res_beta = int(res_beta)
        self.res_alpha = degree + 1 if res_alpha is None else int(res_alpha)
        points, quadrature = s2_grid(self.res_beta, self.res_alpha)
        lmax = max(lmax1, lmax2, lmax_out)
        harmonics = spherical_harmonics(lmax, points)  # float64, [G, (lmax+1)**2]
        # Mirror symmetry y -> -y: Y_lm(-y) = (-1)^(l+m) Y_lm(y).  With an even number of
        # Gauss-Legendre rings every point of the upper half has a mirror image, so the
        # values there are E + O and E - O, where E and O use only the components of even
        # and odd l + m: each transform costs half of a dense one.
        self.paired = self.res_beta % 2 == 0
        if self.paired:
            rings = torch.arange(self.res_beta // 2, self.res_beta)
            upper = (rings[:, None] * self.res_alpha + torch.arange(self.res_alpha)).reshape(-1)
            lower = ((self.res_beta - 1 - rings)[:, None] * self.res_alpha).reshape(-1, 1)
            lower = (lower + torch.arange(self.res_alpha)).reshape(-1)
            order = torch.cat([upper, lower])
            harmonics, quadrature = harmonics[order], quadrature[order]
            half = upper.numel()
            for name, size in (("1", self.dim1), ("2", self.dim2), ("out", self.dim_out)):
                parity = torch.tensor(
                    [(l + m) % 2 for l in range(lmax + 1) for m in range(-l, l + 1)]
                )
                parity = parity[:size]
                even, odd = torch.nonzero(parity == 0)[:, 0], torch.nonzero(parity == 1)[:, 0]
                self.register_buffer(f"_even{name}", even, persistent=False)
                self.register_buffer(f"_odd{name}", odd, persistent=False)
                self.register_buffer(
                    f"_unsplit{name}", torch.argsort(torch.cat([even, odd])), persistent=False
                )
                if name == "out":
                    weighted = harmonics[:half] * quadrature[:half, None]
                    self.register_table("_from_even", weighted[:, even].t().contiguous())
                    self.register_table("_from_odd", weighted[:, odd].t().contiguous())
                else:
                    self.register_table(f"_to_even{name}", harmonics[:half, even].contiguous())
                    self.register_table(f"_to_odd{name}", harmonics[:half, odd].contiguous())
        self.register_table("_to_grid1", harmonics[:, : self.dim1])
        self.register_table("_to_grid2", harmonics[:, : self.dim2])
        projection = (harmonics[:, : self.dim_out] * quadrature[:, None]).t()
        self.register_table("_from_grid", projection.contiguous())
        # [D2, G * (L2+1)]: the grid values of each degree of x2 separately
        per_degree = torch.zeros(self.dim2, harmonics.shape[0], lmax2 + 1, dtype=torch.float64)
        for l in range(lmax2 + 1):
            per_degree[l * l : (l + 1) ** 2, :, l] = harmonics[:, l * l : (l + 1) ** 2].t()
        self.register_table("_per_degree2", per_degree.reshape(self.dim2, -1))
        self.chunk_size = 128  # batch elements per block: grid values stay in cache

    @property
    def is_exact(self) -> bool:
        """Whether the grid integrates degree ``L1 + L2 + L_out`` exactly."""
        degree = self.lmax1 + self.lmax2 + self.lmax_out
        return min(2 * self.res_beta - 1, self.res_alpha - 1) >= degree

    def _chunks(self, *tensors: Tensor | None) -> list[tuple[Tensor | None, ...]]:
        return chunks(self.chunk_size, *tensors)

    def _product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        return _ChunkedProduct.apply(self, x1, x2, weight)

    def _to_grid(self, x: Tensor, which: str) -> tuple[Tensor, Tensor]:
        """``x [B, D, C]`` -> grid values, as (upper, lower) halves ``[B, G/2, C]`` each."""
        if not self.paired:
            f = torch.matmul(getattr(self, f"_to_grid{which}"), x)
            return f, f[:, :0]
        even = torch.matmul(getattr(self, f"_to_even{which}"), x[:, getattr(self, f"_even{which}")])
        odd = torch.matmul(getattr(self, f"_to_odd{which}"), x[:, getattr(self, f"_odd{which}")])
        return even + odd, even - odd

    def _from_grid_values(self, upper: Tensor, lower: Tensor) -> Tensor:
        """Grid values (halves ``[B, G/2, C]``) -> ``[B, D_out, C]`` (quadrature projection)."""
        if not self.paired:
            return torch.matmul(self._from_grid, upper)
        even = torch.matmul(self._from_even, upper + lower)
        odd = torch.matmul(self._from_odd, upper - lower)
        return torch.cat([even, odd], dim=1).index_select(1, self._unsplitout)

    def _plain_product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        if weight is None:
            w2 = w_out = None
        else:
            w1, w2, w_out = self.split_weight(weight)  # per component
            x1 = x1 * w1
        f1 = self._to_grid(x1, "1")  # 2 x [B, G/2, C]
        if x2.dim() == 3:
            f2 = self._to_grid(x2 if w2 is None else x2 * w2, "2")
        else:
            if w2 is None:
                values = torch.matmul(x2, self._to_grid2.t()).unsqueeze(-1)  # [B, G, 1]
            else:
                # degree weights on a single-channel x2: the grid values of each degree are
                # channel-free (one GEMM), then mixed per batch element by the weights
                batch = x2.shape[0]
                per_degree = torch.matmul(x2, self._per_degree2).view(batch, -1, self.lmax2 + 1)
                degree_weights = weight[:, self.lmax1 + 1 : self.lmax1 + self.lmax2 + 2]
                values = torch.matmul(per_degree, degree_weights)  # [B, G, C]
            half = values.shape[1] // 2 if self.paired else values.shape[1]
            f2 = values[:, :half], values[:, half:]
        out = self._from_grid_values(f1[0] * f2[0], f1[1] * f2[1])  # [B, D_out, C]
        return out if w_out is None else out * w_out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", res_beta={self.res_beta}, res_alpha={self.res_alpha}"
