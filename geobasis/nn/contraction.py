r"""Symmetric contraction: the many-body (ACE / MACE) product basis of an atomic basis.

For each atom :math:`i` with atomic basis :math:`A_i \in [(L_\text{in}+1)^2, C]`
(natural parity) and species :math:`s_i`, the output up to correlation order
:math:`\nu_\text{max}` is, channel by channel,

.. math::

    m_{i, LM, c} = \sum_{\nu = 1}^{\nu_\text{max}} \sum_k W^{(\nu)}_{s_i k c}\,
        B^{(\nu)}_{k, LM}(A_{i, \cdot, c})

with :math:`B^{(\nu)}` equivariant polynomials of degree :math:`\nu` in :math:`A`, so a
layer's messages (two-body) become :math:`(\nu+1)`-body features: correlation 3 is body
order 4.  Two constructions of :math:`B`, chosen by name (:data:`CONTRACTIONS`):

* ``"cg"`` (:class:`CGContraction`): the complete basis of
  :func:`geobasis.o3.product_basis.symmetric_product_basis` (generalised Clebsch–Gordan
  couplings, symmetric, no redundant paths; Drautz 2019, Batatia et al. 2022), evaluated
  on the monomials :math:`A_{i_1} \cdots A_{i_\nu}` through its nonzero coefficients
  (about 1% of the dense table at :math:`L_\text{in} = 3`, :math:`\nu = 3`).
* ``"gaunt_grid"`` (:class:`GauntGridContraction`): on an :math:`S^2` grid, the
  :math:`\nu`-fold product of a spherical function with itself is its pointwise
  :math:`\nu`-th power (Luo, Chen & Krishnapriyan, "Enabling efficient equivariant
  operations in the Fourier basis via Gaunt tensor products", ICLR 2024):

  .. math::

      B^{(\nu)}_{LM} = b^{(\nu)}_{sLc} \int_{S^2} f_{\nu}(\hat r)^{\nu}\, Y_{LM}(\hat r)\,
          d\Omega, \qquad f_{\nu}(\hat r) = \sum_{lm} a^{(\nu)}_{slc} A_{lm,c}\, Y_{lm}(\hat r)

  with learnable per-degree input weights :math:`a` and output weights :math:`b` per power
  and species, on a grid exact for degree :math:`\nu L_\text{in} + L_\text{out}`.  It is
  far cheaper (:math:`O(G D)` per power instead of a sum over monomials) and spans less:
  every output is a polynomial of the one function :math:`f_\nu`, so the intermediate
  couplings are those of pointwise products (Gaunt coefficients, even paths only) with
  coefficients that factor into per-degree weights, a subset of the CG span (tested).

Both output natural parity only and are exactly O(3)-equivariant.

Shapes: ``forward(A [N, (L_in+1)**2, C], species [N] long in 0..num_species-1)`` ->
``[N, (L_out+1)**2, C]``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from geobasis.o3 import spherical_harmonics
from geobasis.o3.layout import check_spherical, degree_index, num_components
from geobasis.o3.product_basis import symmetric_product_basis
from geobasis.o3.s2grid import s2_grid

__all__ = [
    "SymmetricContraction",
    "CGContraction",
    "GauntGridContraction",
    "CONTRACTIONS",
    "make_contraction",
]


class SymmetricContraction(nn.Module):
    """Interface of the contractions (see the module docstring).

    Args:
        lmax_in: band limit of the atomic basis ``A``.
        lmax_out: band limit of the output.
        channels: channels ``C`` (contracted channel by channel).
        correlation: the highest order :math:`\\nu` (body order :math:`\\nu + 1`).
        num_species: rows of the per-species weights.
    """

    name: ClassVar[str] = ""

    def __init__(
        self, lmax_in: int, lmax_out: int, channels: int, correlation: int = 3, num_species: int = 1
    ) -> None:
        super().__init__()
        if correlation < 1 or channels < 1 or num_species < 1:
            raise ValueError(
                f"need correlation >= 1, channels >= 1 and num_species >= 1; got "
                f"correlation={correlation}, channels={channels}, num_species={num_species}"
            )
        self.lmax_in, self.lmax_out, self.channels = lmax_in, lmax_out, channels
        self.correlation, self.num_species = correlation, num_species

    def reset_parameters(self) -> None:
        """Re-draw the weights (each implementation documents its initialisation)."""
        raise NotImplementedError(f"{type(self).__name__} must define reset_parameters")

    def forward(self, x: Tensor, species: Tensor) -> Tensor:
        """``x [N, (lmax_in+1)**2, C]``, ``species [N]`` long -> ``[N, (lmax_out+1)**2, C]``."""
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def _check(self, x: Tensor, species: Tensor) -> None:
        check_spherical(x, self.lmax_in, self.channels, type(self).__name__)
        if species.shape != x.shape[:1] or species.dtype != torch.long:
            raise ValueError(
                f"{type(self).__name__}: species must be [N] long (N = {x.shape[0]}), got "
                f"{tuple(species.shape)} {species.dtype}"
            )

    def extra_repr(self) -> str:
        return (
            f"lmax_in={self.lmax_in}, lmax_out={self.lmax_out}, channels={self.channels}, "
            f"correlation={self.correlation}, num_species={self.num_species}"
        )


class CGContraction(SymmetricContraction):
    """The complete symmetric Clebsch–Gordan basis (ACE / MACE), per-species weights
    :math:`W^{(\\nu)} [S, K_\\nu, C]`."""

    name: ClassVar[str] = "cg"

    def __init__(
        self, lmax_in: int, lmax_out: int, channels: int, correlation: int = 3, num_species: int = 1
    ) -> None:
        super().__init__(lmax_in, lmax_out, channels, correlation, num_species)
        self.weights = nn.ParameterList()
        for nu in range(1, correlation + 1):
            basis = symmetric_product_basis(lmax_in, lmax_out, nu)
            for field in ("monomials", "monomial", "element", "component", "value"):
                self.register_buffer(f"{field}_{nu}", getattr(basis, field), persistent=False)
            self.weights.append(
                nn.Parameter(torch.empty(num_species, basis.num_elements, channels))
            )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal weights scaled by ``1/sqrt(number of basis elements of all orders)``."""
        total = sum(w.shape[1] for w in self.weights)
        for weight in self.weights:
            nn.init.normal_(weight, std=1 / math.sqrt(max(total, 1)))

    def forward(self, x: Tensor, species: Tensor) -> Tensor:
        self._check(x, species)
        components = x.transpose(0, 1)  # [D, N, C]: monomials gather whole rows
        out = x.new_zeros(num_components(self.lmax_out), *components.shape[1:])
        for nu, weight in enumerate(self.weights, start=1):
            table = {f: getattr(self, f"{f}_{nu}") for f in ("monomials", "monomial", "element",
                                                             "component", "value")}  # fmt: skip
            product = components[table["monomials"][:, 0]]
            for j in range(1, nu):
                product = product * components[table["monomials"][:, j]]  # [M, N, C]
            per_node = weight[species].transpose(0, 1)  # [K, N, C]
            coefficient = table["value"].to(x.dtype)[:, None, None]
            terms = product[table["monomial"]] * per_node[table["element"]] * coefficient
            out = out.index_add(0, table["component"], terms)
        return out.transpose(0, 1)


class GauntGridContraction(SymmetricContraction):
    """Pointwise powers on an :math:`S^2` grid (Gaunt tensor products), per-species,
    per-power, per-degree input weights ``a [nu, S, L_in+1, C]`` and output weights
    ``b [nu, S, L_out+1, C]``."""

    name: ClassVar[str] = "gaunt_grid"

    def __init__(
        self, lmax_in: int, lmax_out: int, channels: int, correlation: int = 3, num_species: int = 1
    ) -> None:
        super().__init__(lmax_in, lmax_out, channels, correlation, num_species)
        degree = correlation * lmax_in + lmax_out  # of f^nu Y_L: what the grid must integrate
        points, quadrature = s2_grid(degree // 2 + 1, degree + 1)
        to_grid = spherical_harmonics(lmax_in, points, normalization="integral")
        from_grid = spherical_harmonics(lmax_out, points, normalization="integral")
        # float64 tables (cast in forward): exact whatever the default dtype at build time
        self.register_buffer("to_grid", to_grid, persistent=False)
        self.register_buffer("from_grid", (from_grid * quadrature[:, None]).T.contiguous(),
                             persistent=False)  # fmt: skip
        self.register_buffer("degrees_in", degree_index(lmax_in), persistent=False)
        self.register_buffer("degrees_out", degree_index(lmax_out), persistent=False)
        self.input_weights = nn.Parameter(
            torch.empty(correlation, num_species, lmax_in + 1, channels)
        )
        self.output_weights = nn.Parameter(
            torch.empty(correlation, num_species, lmax_out + 1, channels)
        )
        self.register_buffer("power_scale", torch.ones(correlation, lmax_out + 1,
                             dtype=torch.float64), persistent=False)  # fmt: skip
        self.reset_parameters()
        self.power_scale.copy_(self._unit_scale())

    def reset_parameters(self) -> None:
        """Unit input weights; normal output weights scaled by ``1/sqrt(correlation)``."""
        nn.init.ones_(self.input_weights)
        nn.init.normal_(self.output_weights, std=1 / math.sqrt(self.correlation))

    def powers(self, x: Tensor, species: Tensor) -> Tensor:
        """``[nu, D_out, N, C]``: the projected powers before the output weights."""
        n, c = x.shape[0], self.channels
        out = []
        for nu in range(1, self.correlation + 1):
            a = self.input_weights[nu - 1][species][:, self.degrees_in]  # [N, D_in, C]
            scaled = (x * a).transpose(0, 1).reshape(-1, n * c)
            values = (self.to_grid.to(x.dtype) @ scaled).pow(nu)  # [G, N*C]
            out.append((self.from_grid.to(x.dtype) @ values).view(-1, n, c))
        return torch.stack(out)

    def forward(self, x: Tensor, species: Tensor) -> Tensor:
        self._check(x, species)
        powers = self.powers(x, species)  # [nu, D_out, N, C]
        b = self.output_weights[:, species][:, :, self.degrees_out]  # [nu, N, D_out, C]
        scale = self.power_scale.to(x.dtype)[:, self.degrees_out][
            :, :, None, None
        ]  # [nu, D_out, 1, 1]
        return (powers * scale * b.transpose(1, 2)).sum(0).transpose(0, 1)

    @torch.no_grad()
    def _unit_scale(self) -> Tensor:
        """``[nu, L_out+1]``: ``1 / RMS`` of each projected power for standard normal ``A``
        and unit input weights (powers grow as ``O(D^{nu/2})`` otherwise)."""
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(512, num_components(self.lmax_in), 1, generator=generator,
                        dtype=torch.float64)  # fmt: skip
        grids = (self.to_grid.double(), self.from_grid.double())
        out = torch.ones(self.correlation, self.lmax_out + 1, dtype=torch.float64)
        for nu in range(1, self.correlation + 1):
            values = (grids[0] @ x[:, :, 0].T).pow(nu)
            projected = grids[1] @ values  # [D_out, 512]
            for l in range(self.lmax_out + 1):
                rms = projected[l * l : (l + 1) ** 2].square().mean().sqrt()
                out[nu - 1, l] = 1 / float(rms) if rms > 1e-8 else 0.0  # 0: nothing there
        return out


#: contractions by name
CONTRACTIONS: dict[str, type[SymmetricContraction]] = {
    CGContraction.name: CGContraction,
    GauntGridContraction.name: GauntGridContraction,
}


def make_contraction(name: str, *args, **kwargs) -> SymmetricContraction:
    """``CONTRACTIONS[name](*args, **kwargs)`` with a clear error for an unknown name."""
    if name not in CONTRACTIONS:
        raise ValueError(f"contraction: unknown {name!r}; choose one of {sorted(CONTRACTIONS)}")
    return CONTRACTIONS[name](*args, **kwargs)
