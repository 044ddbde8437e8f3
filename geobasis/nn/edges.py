r"""Edge geometry computed once per forward pass and shared by every layer.

For an edge :math:`j \to i` with :math:`\vec r_{ij} = \vec x_j - \vec x_i` (plus the
periodic image offset),

.. math::

    Y_{ij} = Y^{0 \dots L}(\hat r_{ij}) \ \text{("component" normalisation)}, \qquad
    \rho_{ij} = e(r_{ij})\, u(r_{ij})

with :math:`e` a Bessel radial basis (DimeNet) and :math:`u` the polynomial envelope
(smooth at the cutoff).  A model computes these once (:class:`EdgeEmbedding`) and passes
the resulting :class:`Edges` to each convolution, as e3nn's ``gate_points_2101``, NequIP,
MACE and PyG's SchNet do; a layer whose harmonics stop at a lower degree reads the first
:math:`(l+1)^2` columns (the layout is degree-major, :mod:`geobasis.o3.layout`).

Shapes: ``index [2, E]``, ``vectors [E, 3]``, ``lengths [E]``,
``harmonics [E, (L+1)**2]``, ``radial [E, num_radial]``.

Reference: Klicpera et al., "Directional message passing for molecular graphs"
(DimeNet, ICLR 2020) for the basis and envelope.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch_geometric.nn.inits import reset

from geobasis.graph import edge_vectors
from geobasis.o3 import SphericalHarmonics
from geobasis.radial import BesselBasis, PolynomialEnvelope

__all__ = ["Edges", "EdgeEmbedding"]


@dataclass
class Edges:
    """The geometry of a graph's edges, computed once and read by every layer.

    Attributes:
        index: ``[2, E]`` edge index (row 0 source :math:`j`, row 1 target :math:`i`).
        vectors: ``[E, 3]`` edge vectors :math:`\\vec r_{ij}`.
        lengths: ``[E]`` their lengths.
        harmonics: ``[E, (L+1)**2]`` spherical harmonics of the directions.
        radial: ``[E, num_radial]`` radial basis times the envelope.
    """

    index: Tensor
    vectors: Tensor
    lengths: Tensor
    harmonics: Tensor
    radial: Tensor

    @property
    def lmax(self) -> int:
        """The band limit of :attr:`harmonics`."""
        return int(round(self.harmonics.shape[-1] ** 0.5)) - 1


class EdgeEmbedding(nn.Module):
    """Edge vectors, harmonics up to ``lmax`` and the enveloped Bessel basis, in one call.

    Args:
        lmax: band limit of the edge harmonics.
        num_radial: Bessel functions of the radial basis.
        cutoff: radial cutoff in Å (edges must be shorter).

    ``forward(pos, edge_index, shifts=None, cell=None, batch=None)`` returns
    :class:`Edges`; ``shifts`` and ``cell`` are those of a periodic
    :func:`geobasis.graph.radius_graph`.
    """

    def __init__(self, lmax: int, num_radial: int = 8, cutoff: float = 5.0) -> None:
        super().__init__()
        self.lmax, self.num_radial, self.cutoff = lmax, num_radial, float(cutoff)
        self.harmonics = SphericalHarmonics(lmax, normalization="component")
        self.radial_basis = BesselBasis(num_radial, cutoff)
        self.envelope = PolynomialEnvelope(cutoff)

    def reset_parameters(self) -> None:
        """Re-initialise every submodule's parameters (PyG's ``reset``)."""
        for child in self.children():
            reset(child)

    def forward(
        self,
        pos: Tensor,
        edge_index: Tensor,
        shifts: Tensor | None = None,
        cell: Tensor | None = None,
        batch: Tensor | None = None,
    ) -> Edges:
        vectors, lengths = edge_vectors(pos, edge_index, shifts, cell, batch)
        radial = self.radial_basis(lengths) * self.envelope(lengths)[:, None]
        return Edges(edge_index, vectors, lengths, self.harmonics(vectors), radial)

    def extra_repr(self) -> str:
        return f"lmax={self.lmax}, num_radial={self.num_radial}, cutoff={self.cutoff}"
