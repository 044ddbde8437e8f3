r"""Many-body equivariant potential: MACE's recipe in geobasis' parts.

Each of ``num_layers`` layers turns two-body messages into :math:`(\nu+1)`-body features:

.. math::

    A_i = \frac{1}{\sqrt{\bar n}} \sum_{j} P\big(W_\text{up} h_j,\, Y(\hat r_{ij});\,
        R(r_{ij})\big), \qquad
    h'_i = W_\text{out}\, \mathrm{SC}_{s_i}\big(W_A A_i\big) + W_\text{self} h_i

with :math:`P` an equivariant product weighted per edge by a radial MLP (the atomic
basis :math:`A`, up to degree ``lmax``), :math:`\mathrm{SC}_{s}` the symmetric
contraction of correlation order :math:`\nu` with per-element weights
(:mod:`geobasis.nn.contraction`: body order :math:`\nu + 1` in one layer), and
per-degree linear maps :math:`W`.  Hidden features keep degrees ``0..lmax_hidden``.
Every layer reads out an energy from its scalars (a linear map, an MLP after the last
layer) and the atomic energy is their sum, as in MACE; :class:`AtomisticModel` adds scale,
reference energies, forces and stress.

Reference: Batatia et al., "MACE: Higher order equivariant message passing neural
networks for fast and accurate force fields" (NeurIPS 2022); Luo, Chen & Krishnapriyan,
Gaunt tensor products (ICLR 2024) for the ``"gaunt_grid"`` contraction.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from geobasis._tracing import traced
from geobasis.nn.contraction import CONTRACTIONS, make_contraction
from geobasis.nn.conv.equivariant import PRODUCTS, EquivariantConv
from geobasis.nn.edges import EdgeEmbedding, Edges
from geobasis.nn.linear import EquivariantLinear
from geobasis.nn.models.atomistic import NUM_ELEMENTS, AtomicGraph, AtomisticModel
from geobasis.nn.models.potential import _pad_degrees

__all__ = ["ManyBodyPotential", "ManyBodyInteraction", "parse_elements"]


def parse_elements(elements: str) -> list[int]:
    """``"1,6,8"`` -> ``[1, 6, 8]`` (sorted, unique), with a one-line error naming the option."""
    try:
        numbers = sorted({int(part) for part in elements.split(",") if part.strip()})
    except ValueError:
        raise ValueError(
            f"elements: expected comma-separated atomic numbers like '1,6,8', got {elements!r}"
        ) from None
    if not numbers or numbers[0] < 1 or numbers[-1] >= NUM_ELEMENTS:
        raise ValueError(f"elements: atomic numbers 1..118 are needed, got {elements!r}")
    return numbers


class ManyBodyInteraction(nn.Module):
    """One layer: atomic basis, symmetric contraction, linear update with residual.

    ``forward(h [N, (L_in+1)**2, C], edges, species [N])`` -> ``[N, (L_hidden+1)**2, C]``.
    """

    def __init__(
        self,
        lmax_in: int,
        lmax_hidden: int,
        lmax_basis: int,
        channels: int,
        correlation: int,
        contraction: str,
        num_species: int,
        **conv,
    ) -> None:
        super().__init__()
        self.lmax_hidden = lmax_hidden
        self.linear_up = EquivariantLinear(lmax_in, channels, channels, bias=False)
        self.conv = EquivariantConv(lmax_in, lmax_basis, channels, lmax_sh=lmax_basis, **conv)
        self.linear_basis = EquivariantLinear(lmax_basis, channels, channels, bias=False)
        self.contraction = make_contraction(
            contraction, lmax_basis, lmax_hidden, channels, correlation, num_species
        )
        self.linear_out = EquivariantLinear(lmax_hidden, channels, channels)
        self.self_connection = EquivariantLinear(lmax_in, channels, channels, bias=False)

    def reset_parameters(self) -> None:
        for module in self.children():
            module.reset_parameters()

    def forward(self, h: Tensor, edges: Edges, species: Tensor) -> Tensor:
        basis = self.linear_basis(self.conv(self.linear_up(h), edges))
        update = self.linear_out(self.contraction(basis, species))
        residual = self.self_connection(h)[:, : update.shape[1]]
        return update + _pad_degrees(residual, self.lmax_hidden)


class ManyBodyPotential(AtomisticModel):
    """Many-body (MACE-style) potential; ``ManyBodyPotential()(data)`` gives energy and
    forces (and stress).

    Args:
        channels: channels per degree.
        lmax: band limit of the edge harmonics and of the atomic basis ``A``.
        lmax_hidden: band limit of the features passed between layers.
        correlation: order of the symmetric contraction (body order ``correlation + 1``
            per layer).
        num_layers: interaction layers.
        cutoff: radial cutoff in Å.
        num_radial: Bessel functions of the radial basis.
        radial_hidden: width of the radial MLPs.
        product: equivariant product of the edge messages (:data:`geobasis.products.PRODUCTS`).
        contraction: symmetric contraction (:data:`geobasis.nn.contraction.CONTRACTIONS`).
        avg_num_neighbors: normalisation of the neighbour sums (the trainer sets it from
            the training data).
        elements: comma-separated atomic numbers with their own contraction weights (the
            trainer sets it from the training data).
    """

    name: ClassVar[str] = "manybody"
    option_choices: ClassVar[dict[str, tuple]] = {
        "product": PRODUCTS,
        "contraction": tuple(CONTRACTIONS),
    }
    data_options: ClassVar[tuple[str, ...]] = ("avg_num_neighbors", "elements")

    def __init__(
        self,
        channels: int = 32,
        lmax: int = 3,
        lmax_hidden: int = 1,
        correlation: int = 3,
        num_layers: int = 2,
        cutoff: float = 5.0,
        num_radial: int = 8,
        radial_hidden: int = 64,
        product: str = "cg",
        contraction: str = "gaunt_grid",
        avg_num_neighbors: float = 10.0,
        elements: str = "1,6,7,8,9",
    ) -> None:
        super().__init__()
        if num_layers < 1 or channels < 1 or not 0 <= lmax_hidden <= lmax:
            raise ValueError(
                f"need num_layers >= 1, channels >= 1 and 0 <= lmax_hidden <= lmax; got "
                f"num_layers={num_layers}, channels={channels}, lmax_hidden={lmax_hidden}, "
                f"lmax={lmax}"
            )
        self.record_options(locals())
        self.cutoff = float(cutoff)
        numbers = parse_elements(elements)
        species_of = torch.full((NUM_ELEMENTS,), -1, dtype=torch.long)
        species_of[numbers] = torch.arange(len(numbers))
        self.register_buffer("species_of", species_of, persistent=False)
        self.embedding = nn.Embedding(NUM_ELEMENTS, channels)
        self.edge_embedding = EdgeEmbedding(lmax, num_radial, cutoff)
        conv = {"cutoff": cutoff, "num_radial": num_radial, "radial_hidden": radial_hidden,
                "product": product, "avg_num_neighbors": avg_num_neighbors}  # fmt: skip
        self.interactions = nn.ModuleList(
            ManyBodyInteraction(
                0 if k == 0 else lmax_hidden,
                lmax_hidden,
                lmax,
                channels,
                correlation,
                contraction,
                len(numbers),
                **conv,
            )  # fmt: skip
            for k in range(num_layers)
        )
        self.readouts = nn.ModuleList(nn.Linear(channels, 1) for _ in range(num_layers - 1))
        self.readouts.append(nn.Sequential(nn.Linear(channels, 16), nn.SiLU(), nn.Linear(16, 1)))

    def species(self, z: Tensor) -> Tensor:
        """``[N]`` row of each atom's contraction weights; an element outside ``elements``
        is a one-line error (checked outside traced code)."""
        species = self.species_of[z]
        if not traced() and bool((species < 0).any()):
            missing = sorted(set(z[species < 0].tolist()))
            raise ValueError(
                f"elements: atomic numbers {missing} are not among this model's elements "
                f"({self.config['elements']}); train with them in the data or set elements"
            )
        return species

    def node_energies(self, graph: AtomicGraph) -> Tensor:
        """``[N]`` unit-scale atomic energies: the sum of every layer's readout."""
        edges = self.edge_embedding(
            graph.pos, graph.edge_index, graph.shifts, graph.cell, graph.batch
        )
        species = self.species(graph.z)
        h = self.embedding(graph.z)[:, None, :]
        energies = []
        for interaction, readout in zip(self.interactions, self.readouts, strict=True):
            h = interaction(h, edges, species)
            energies.append(readout(h[:, 0, :])[:, 0])
        return torch.stack(energies).sum(0)
