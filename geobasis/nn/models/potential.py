r"""Equivariant interatomic potential: energy, forces and stress from positions and species.

.. math::

    E = \sum_i \big( s\, \varepsilon(\mathbf h^{(T)}_{i,0}) + E^\text{ref}_{z_i} \big),
    \qquad \mathbf F_i = -\frac{\partial E}{\partial \vec x_i}, \qquad
    \sigma = \frac{1}{V} \frac{\partial E}{\partial \epsilon}

Atoms start as an embedding of their atomic number (scalars, :math:`l = 0`); the edge
geometry (vectors, harmonics up to ``lmax``, enveloped Bessel basis) is computed once
(:class:`~geobasis.nn.EdgeEmbedding`); each of ``num_layers`` interaction blocks applies
an :class:`EquivariantConv` (edge harmonics × node features, weighted by a radial MLP),
an :class:`EquivariantLinear`, a self-connection and a gate (or S² activation); an MLP
on the final scalars gives atomic energies :math:`\varepsilon`, which
:class:`AtomisticModel` scales by :math:`s` and shifts by per-element reference energies
:math:`E^\text{ref}_z` fitted by least squares on the training set.  Forces (and, with a
cell, the stress via a symmetric strain :math:`\epsilon` of positions and cell) come from
autograd, so they are exactly the gradients of the energy.

Reference: Batzner et al., "E(3)-equivariant graph neural networks for data-efficient
and accurate interatomic potentials" (NequIP, Nat. Commun. 2022).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from geobasis.nn.activation import NONLINEARITIES, make_nonlinearity
from geobasis.nn.conv.equivariant import PRODUCTS, EquivariantConv
from geobasis.nn.edges import EdgeEmbedding, Edges
from geobasis.nn.linear import EquivariantLinear
from geobasis.nn.models.atomistic import NUM_ELEMENTS, AtomicGraph, AtomisticModel
from geobasis.o3.layout import num_components

__all__ = ["Potential", "Interaction"]


def _pad_degrees(x: Tensor, lmax: int) -> Tensor:
    """Zero-pad ``[..., D, C]`` to ``(lmax+1)**2`` rows."""
    missing = num_components(lmax) - x.shape[-2]
    if missing == 0:
        return x
    return torch.cat([x, x.new_zeros(*x.shape[:-2], missing, x.shape[-1])], dim=-2)


class Interaction(nn.Module):
    """Convolution, linear mixing, self-connection and nonlinearity.

    ``forward(x [N, (L_in+1)**2, C], edges)`` -> ``[N, (L_out+1)**2, C]``.
    """

    def __init__(self, lmax_in: int, lmax_out: int, channels: int, nonlinearity: str, **conv):
        super().__init__()
        self.lmax_out = lmax_out
        self.conv = EquivariantConv(lmax_in, lmax_out, channels, **conv)
        self.linear = EquivariantLinear(lmax_out, channels, channels)
        self.self_connection = EquivariantLinear(lmax_in, channels, channels, bias=False)
        self.activation = make_nonlinearity(nonlinearity, lmax_out, channels)

    def reset_parameters(self) -> None:
        for module in (self.conv, self.linear, self.self_connection, self.activation):
            module.reset_parameters()

    def forward(self, x: Tensor, edges: Edges) -> Tensor:
        h = self.linear(self.conv(x, edges))
        h = h + _pad_degrees(self.self_connection(x), self.lmax_out)
        return self.activation(h)


class Potential(AtomisticModel):
    """Equivariant potential; ``Potential()(data)`` gives energy and forces (and stress).

    Args:
        channels: channels per degree.
        lmax: band limit of the hidden features and of the edge harmonics.
        num_layers: interaction blocks.
        cutoff: radial cutoff in Å (the radius graph is built with it when ``data`` has no
            ``edge_index``).
        num_radial: Bessel functions of the radial basis.
        radial_hidden: width of the radial MLPs.
        product: equivariant product of the convolutions (:data:`geobasis.products.PRODUCTS`).
        nonlinearity: gated nonlinearity (``"gate"``) or pointwise on an S² grid (``"s2"``).
        avg_num_neighbors: normalisation of the neighbour sums (the trainer sets it from
            the training data).

    ``forward(data)`` reads ``pos [N, 3]``, ``z [N]``, optional ``batch``, ``edge_index``
    (+ ``shifts``), ``cell [B, 3, 3]`` and ``pbc``; returns ``{"energy": [B],
    "forces": [N, 3]}`` and ``"stress": [B, 3, 3]`` when a cell is given.
    """

    name: ClassVar[str] = "potential"
    option_choices: ClassVar[dict[str, tuple]] = {
        "product": PRODUCTS,
        "nonlinearity": NONLINEARITIES,
    }

    def __init__(
        self,
        channels: int = 32,
        lmax: int = 2,
        num_layers: int = 3,
        cutoff: float = 5.0,
        num_radial: int = 8,
        radial_hidden: int = 32,
        product: str = "cg",
        nonlinearity: str = "gate",
        avg_num_neighbors: float = 10.0,
    ) -> None:
        super().__init__()
        if num_layers < 1 or lmax < 0 or channels < 1:
            raise ValueError(
                f"need num_layers >= 1, lmax >= 0, channels >= 1; got {num_layers}, {lmax}, "
                f"{channels}"
            )
        self.record_options(locals())
        self.cutoff = float(cutoff)
        self.embedding = nn.Embedding(NUM_ELEMENTS, channels)
        self.edge_embedding = EdgeEmbedding(lmax, num_radial, cutoff)
        conv = {
            "cutoff": cutoff,
            "num_radial": num_radial,
            "radial_hidden": radial_hidden,
            "product": product,
            "avg_num_neighbors": avg_num_neighbors,
        }
        self.interactions = nn.ModuleList(
            Interaction(0 if k == 0 else lmax, lmax, channels, nonlinearity, **conv)
            for k in range(num_layers)
        )
        self.readout = nn.Sequential(
            nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, 1)
        )

    def node_energies(self, graph: AtomicGraph) -> Tensor:
        """``[N]`` unit-scale atomic energies from the final scalars."""
        edges = self.edge_embedding(
            graph.pos, graph.edge_index, graph.shifts, graph.cell, graph.batch
        )
        x = self.embedding(graph.z)[:, None, :]
        for interaction in self.interactions:
            x = interaction(x, edges)
        return self.readout(x[:, 0, :])[:, 0]

    def upgrade_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Version-1 checkpoints kept one radial basis per conv; now there is one per model."""
        old = [k for k in state_dict if k.endswith("conv.radial_basis.frequencies")]
        for key in old:
            frequencies = state_dict.pop(key)
            state_dict.setdefault("edge_embedding.radial_basis.frequencies", frequencies)
        return super().upgrade_state_dict(state_dict)
