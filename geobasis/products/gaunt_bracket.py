r"""The odd (parity-changing) paths on an S² grid, through the spherical Poisson bracket.

A Gaunt product multiplies two spherical functions pointwise and only reaches the
Clebsch–Gordan paths with even :math:`l_1 + l_2 + l` (see :mod:`geobasis.products._gaunt`).
The odd paths, the cross-product-like ones, come from the surface-curl pairing of the two
functions, the Poisson bracket of the sphere:

.. math::

    \{f_1, f_2\}(\hat r) = \hat r \cdot \big(\nabla_{S^2} f_1 \times \nabla_{S^2} f_2\big)
        = (\hat r \times \nabla_{S^2} f_1) \cdot \nabla_{S^2} f_2,
    \qquad
    y_{l m c} = w^{(o)}_{l c} \int_{S^2} \{f_1, f_2\}\, Y_l^m\, d\Omega,

with :math:`f_i = \sum_{l' m'} w^{(i)}_{l' c} x^{(i)}_{l' m' c} Y_{l'}^{m'}` as in the Gaunt
product.  The bracket is rotation-equivariant, bilinear and antisymmetric, and it flips
parity (a gradient is odd, :math:`\hat r` odd, the cross product even), so by the
Wigner–Eckart theorem its coupling of degrees :math:`(l_1, l_2) \to l` is a multiple
:math:`b(l_1, l_2, l)` of the Clebsch–Gordan coefficients, nonzero exactly on the odd paths
(:func:`bracket_factor`; tested for every path up to degree 5).
For spherical polynomials of degrees :math:`L_1, L_2` the bracket has degree at most
:math:`L_1 + L_2 - 1`, so a Gauss–Legendre grid exact for :math:`L_1 + L_2 - 1 + L_{out}`
makes the product exact, and it costs what a Gaunt grid product costs: one transform of
each input (here of its surface gradient: three values per point), one pointwise
contraction, one projection, :math:`O(L^3)` per channel with separable transforms
(:math:`O(L^4)` as the dense matrix products used here).

``paths="odd"`` is the bracket alone (pseudotensor output); ``paths="all"`` adds the
pointwise (Gaunt) product with its own degree weights, so the result spans the even and the
odd paths: the parity-complete grid product.

Reference: Bochkarev, Lysogorskiy & Drautz (arXiv 2605.15073, 2026) for the surface-curl
pairing; Luo, Chen & Krishnapriyan (ICLR 2024) for Gaunt products on grids.
"""

from __future__ import annotations

import math
from functools import cache

import torch
from torch import Tensor

from geobasis.o3 import clebsch_gordan, spherical_harmonics
from geobasis.o3.coupling import coupling_paths, gaunt_factor
from geobasis.o3.layout import degree_slice
from geobasis.o3.s2grid import s2_grid
from geobasis.products._gaunt import GauntProduct

__all__ = ["GauntBracketProduct", "bracket_factor"]


def _surface_gradients(lmax: int, points: Tensor) -> tuple[Tensor, Tensor]:
    r"""``Y [G, D]`` and :math:`\nabla_{S^2} Y` ``[G, 3, D]`` at unit ``points [G, 3]``
    (float64): the gradient of the degree-0 homogeneous extension :math:`Y(x/|x|)` is
    tangential and equals the surface gradient on the sphere."""
    points = points.detach().clone().requires_grad_()
    values = spherical_harmonics(lmax, points)
    gradients = [
        torch.autograd.grad(values[:, d].sum(), points, retain_graph=True)[0]
        for d in range(values.shape[1])
    ]
    return values.detach(), torch.stack(gradients, dim=-1)


@cache
def bracket_factor(l1: int, l2: int, l: int) -> float:
    r"""The scalar :math:`b` with :math:`\int Y_l^m \{Y_{l_1}^{m_1}, Y_{l_2}^{m_2}\} d\Omega
    = b\, C^{l m}_{l_1 m_1, l_2 m_2}` (``clebsch_gordan(l1, l2, l)``); 0 off the odd
    paths.  Computed once by exact quadrature."""
    if (l1 + l2 + l) % 2 == 0 or not abs(l1 - l2) <= l <= l1 + l2 or min(l1, l2) == 0:
        return 0.0
    degree = l1 + l2 + l
    points, weights = s2_grid(math.ceil((degree + 1) / 2), degree + 1)
    top = max(l1, l2, l)
    values, grads = _surface_gradients(top, points)
    curl = torch.linalg.cross(points[:, :, None].expand_as(grads[..., degree_slice(l1)]),
                              grads[..., degree_slice(l1)], dim=1)  # fmt: skip
    bracket = torch.einsum("gka,gkb->gab", curl, grads[..., degree_slice(l2)])
    coupling = torch.einsum("g,gab,gc->abc", weights, bracket, values[:, degree_slice(l)])
    cg = clebsch_gordan(l1, l2, l, dtype=torch.float64)
    return float((coupling * cg).sum() / (cg * cg).sum())


class GauntBracketProduct(GauntProduct):
    r"""Odd-path (Poisson bracket) or parity-complete grid product.

    Args:
        lmax1, lmax2, lmax_out: band limits of ``x1``, ``x2`` and the output.
        channels: number of channels ``C`` (needed for weights).
        weights: ``"internal"`` (initialised to one), ``"external"`` or ``"none"``.
        paths: ``"odd"`` (the bracket: odd :math:`l_1 + l_2 + l`, pseudotensor output) or
            ``"all"`` (bracket + pointwise product: every path; SO(3)-equivariant).

    Weights: ``[L1+1 + L2+1 + L_out+1, C]`` degree weights (of ``x1``, ``x2``, output) for
    ``"odd"``; for ``"all"`` twice that, the pointwise product's first, the bracket's second.

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
        paths: str = "odd",
    ) -> None:
        super().__init__(lmax1, lmax2, lmax_out, channels, weights)
        if paths not in ("odd", "all"):
            raise ValueError(f"paths must be 'odd' or 'all', got {paths!r}")
        self.path_set = paths
        self.num_degree_weights = lmax1 + lmax2 + lmax_out + 3
        if paths == "all":
            self._init_weights(2 * self.num_degree_weights)
        degree = lmax1 + lmax2 + lmax_out - (paths == "odd")
        self.res_beta, self.res_alpha = math.ceil((degree + 1) / 2), degree + 1
        self.build_tables((lmax1, lmax2, lmax_out, degree), self._build_tables)

    def _build_tables(self) -> None:
        points, quadrature = s2_grid(self.res_beta, self.res_alpha)
        lmax = max(self.lmax1, self.lmax2, self.lmax_out)
        values, grads = _surface_gradients(lmax, points)
        curl = torch.linalg.cross(points[:, :, None].expand_as(grads), grads, dim=1)
        g = points.shape[0]
        # [3G, D]: the three Cartesian components at every point, component-major
        self.register_table("_curl1", curl[..., : self.dim1].transpose(0, 1).reshape(3 * g, -1))
        self.register_table("_grad2", grads[..., : self.dim2].transpose(0, 1).reshape(3 * g, -1))
        self.register_table("_values1", values[:, : self.dim1].contiguous())
        self.register_table("_values2", values[:, : self.dim2].contiguous())
        self.register_table("_project", (values[:, : self.dim_out] * quadrature[:, None]).t())

    @property
    def paths(self) -> list[tuple[int, int, int]]:
        """The Clebsch–Gordan paths this product spans."""
        return coupling_paths(self.lmax1, self.lmax2, self.lmax_out, self.path_set)

    def bracket_factors(self) -> Tensor:
        """:func:`bracket_factor` of every path of :attr:`paths` (0 on even paths)."""
        return torch.tensor([bracket_factor(*p) for p in self.paths], dtype=torch.float64)

    def clebsch_gordan_weights(self, weight: Tensor | None = None) -> Tensor:
        r"""Path weights ``[..., num_paths, C]`` (``[num_paths]`` without weights) for a
        ``ClebschGordanProduct(..., paths=<this paths>, path_normalization="none")`` that
        computes exactly this product: :math:`w^{(1)}_{l_1} w^{(2)}_{l_2} w^{(o)}_l b` on odd
        paths, the Gaunt weights times :func:`~geobasis.o3.gaunt_factor` on even ones."""
        weight = self.weight if weight is None else weight
        odd = [(l1 + l2 + l) % 2 == 1 for l1, l2, l in self.paths]
        factors = torch.tensor(
            [
                bracket_factor(*p) if o else gaunt_factor(*p)
                for p, o in zip(self.paths, odd, strict=True)
            ],
            dtype=torch.float64,
        )
        if weight is None:
            return factors
        n = self.num_degree_weights
        first = 0 if self.path_set == "odd" else n  # where the bracket's weights start
        offset2, offset_out = self.lmax1 + 1, self.lmax1 + self.lmax2 + 2
        rows = [
            [(first if o else 0) + k for k in (l1, offset2 + l2, offset_out + l)]
            for (l1, l2, l), o in zip(self.paths, odd, strict=True)
        ]
        index = torch.tensor(rows, device=weight.device)
        per_path = weight[..., index, :].prod(-2)
        return per_path * factors.to(weight).unsqueeze(-1)

    # ------------------------------------------------------------------ forward
    def _product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        return self._chunked_plain_product(x1, x2, weight)

    def _plain_product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        n = self.num_degree_weights
        if self.path_set == "odd":
            return self._bracket(x1, x2, weight)
        pointwise = self._pointwise(x1, x2, None if weight is None else weight[:, :n])
        return pointwise + self._bracket(x1, x2, None if weight is None else weight[:, n:])

    def _weighted(self, x1: Tensor, x2: Tensor, weight: Tensor | None):
        """Inputs scaled by their degree weights, and the output degree weights."""
        if weight is None:
            return x1, x2, None
        w1, w2, w_out = self.split_weight(weight)
        x2 = x2 * w2 if x2.dim() == 3 else x2.unsqueeze(-1) * w2
        return x1 * w1, x2, w_out

    def _bracket(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        x1, x2, w_out = self._weighted(x1, x2, weight)
        batch, channels = x1.shape[0], x1.shape[-1]
        curl = torch.matmul(self._curl1, x1).view(batch, 3, -1, channels)  # [B, 3, G, C]
        if x2.dim() == 2:  # one channel: [B, 3G] -> broadcast over channels
            grad = torch.matmul(x2, self._grad2.t()).view(batch, 3, -1, 1)
        else:
            grad = torch.matmul(self._grad2, x2).view(batch, 3, -1, x2.shape[-1])
        bracket = (curl * grad).sum(1)  # [B, G, C]
        out = torch.matmul(self._project, bracket)
        return out if w_out is None else out * w_out

    def _pointwise(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        x1, x2, w_out = self._weighted(x1, x2, weight)
        f1 = torch.matmul(self._values1, x1)
        f2 = torch.matmul(x2, self._values2.t()).unsqueeze(-1) if x2.dim() == 2 else (
            torch.matmul(self._values2, x2))  # fmt: skip
        out = torch.matmul(self._project, f1 * f2)
        return out if w_out is None else out * w_out

    def extra_repr(self) -> str:
        group = "SO(3) only" if self.path_set == "all" else "O(3), pseudotensor output"
        return (
            f"{super().extra_repr()}, paths={self.path_set!r} ({group}), "
            f"res_beta={self.res_beta}, res_alpha={self.res_alpha}"
        )
