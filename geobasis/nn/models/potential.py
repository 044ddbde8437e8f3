r"""Equivariant interatomic potential: energy, forces and stress from positions and species.

.. math::

    E = \sum_i \big( s\, \varepsilon(\mathbf h^{(T)}_{i,0}) + E^\text{ref}_{z_i} \big),
    \qquad \mathbf F_i = -\frac{\partial E}{\partial \vec x_i}, \qquad
    \sigma = \frac{1}{V} \frac{\partial E}{\partial \epsilon}

Atoms start as an embedding of their atomic number (scalars, :math:`l = 0`); each of
``num_layers`` interaction blocks applies an :class:`EquivariantConv` (edge harmonics ×
node features, weighted by a radial MLP), an :class:`EquivariantLinear`, a
self-connection and a gate (or S² activation); an MLP on the final scalars gives
atomic energies :math:`\varepsilon`, scaled by :math:`s` and shifted by per-element
reference energies :math:`E^\text{ref}_z` fitted by least squares on the training set
(:meth:`Potential.fit_reference_energies`).  Forces (and, with a cell, the stress via a
symmetric strain :math:`\epsilon` of positions and cell) come from autograd, so they
are exactly the gradients of the energy.

Reference: Batzner et al., "E(3)-equivariant graph neural networks for data-efficient
and accurate interatomic potentials" (NequIP, Nat. Commun. 2022).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from geobasis.graph import radius_graph
from geobasis.nn.activation import Gate, S2Activation
from geobasis.nn.conv.equivariant import EquivariantConv
from geobasis.nn.linear import EquivariantLinear
from geobasis.nn.models.atomistic import NUM_ELEMENTS, AtomisticModel, batch_of

__all__ = ["Potential"]


def _pad_degrees(x: Tensor, lmax: int) -> Tensor:
    """Zero-pad ``[..., D, C]`` to ``(lmax+1)**2`` rows."""
    missing = (lmax + 1) ** 2 - x.shape[-2]
    if missing == 0:
        return x
    return torch.cat([x, x.new_zeros(*x.shape[:-2], missing, x.shape[-1])], dim=-2)


class Interaction(nn.Module):
    """Convolution, linear mixing, self-connection and nonlinearity."""

    def __init__(self, lmax_in: int, lmax_out: int, channels: int, nonlinearity: str, **conv):
        super().__init__()
        self.lmax_out = lmax_out
        self.conv = EquivariantConv(lmax_in, lmax_out, channels, **conv)
        self.linear = EquivariantLinear(lmax_out, channels, channels)
        self.self_connection = EquivariantLinear(lmax_in, channels, channels, bias=False)
        if nonlinearity == "gate":
            self.activation: nn.Module = Gate(lmax_out, channels)
        elif nonlinearity == "s2":
            self.activation = S2Activation(lmax_out)
        else:
            raise ValueError(f"nonlinearity must be 'gate' or 's2', got {nonlinearity!r}")

    def forward(self, x, pos, edge_index, shifts, cell, batch) -> Tensor:
        h = self.linear(self.conv(x, pos, edge_index, shifts, cell, batch))
        h = h + _pad_degrees(self.self_connection(x), self.lmax_out)
        return self.activation(h)


class Potential(AtomisticModel):
    """Equivariant potential; ``Potential()(data)`` gives energy and forces (and stress).

    Args:
        channels: channels per degree.
        lmax: band limit of the hidden features.
        num_layers: interaction blocks.
        cutoff: radial cutoff in Å (the radius graph is built with it when ``data`` has no
            ``edge_index``).
        num_radial: Bessel functions of the radial basis.
        radial_hidden: width of the radial MLPs.
        product: ``"cg"``, ``"gaunt_grid"`` or ``"gaunt_fourier"``.
        nonlinearity: ``"gate"`` or ``"s2"``.
        avg_num_neighbors: normalisation of the neighbour sums.

    ``forward(data)`` reads ``pos [N, 3]``, ``z [N]``, optional ``batch``, ``edge_index``
    (+ ``shifts``), ``cell [B, 3, 3]`` and ``pbc``; returns ``{"energy": [B],
    "forces": [N, 3]}`` and ``"stress": [B, 3, 3]`` when a cell is given.
    """

    def __init__(
        self,
        channels: int = 32,
        lmax: int = 2,
        num_layers: int = 3,
        cutoff: float = 5.0,
        num_radial: int = 8,
        radial_hidden: int = 64,
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
        self.config: dict[str, Any] = {
            "model": "potential",
            "channels": channels,
            "lmax": lmax,
            "num_layers": num_layers,
            "cutoff": cutoff,
            "num_radial": num_radial,
            "radial_hidden": radial_hidden,
            "product": product,
            "nonlinearity": nonlinearity,
            "avg_num_neighbors": avg_num_neighbors,
        }
        self.cutoff = float(cutoff)
        self.embedding = nn.Embedding(NUM_ELEMENTS, channels)
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

    def atomic_energies(self, data, pos: Tensor, cell: Tensor | None) -> Tensor:
        """``[N]`` atomic energies (reference energies included) at positions ``pos``."""
        z = data.z.long()
        batch = batch_of(data, pos)
        edge_index = getattr(data, "edge_index", None)
        shifts = getattr(data, "shifts", None)
        if edge_index is None:
            if cell is not None:
                edge_index, shifts = radius_graph(
                    pos.detach(),
                    self.cutoff,
                    batch,
                    cell=cell.detach(),
                    pbc=getattr(data, "pbc", None),
                )
            else:
                edge_index = radius_graph(pos.detach(), self.cutoff, batch)
        x = self.embedding(z)[:, None, :]
        for interaction in self.interactions:
            x = interaction(x, pos, edge_index, shifts, cell, batch)
        energies = self.readout(x[:, 0, :])[:, 0] * self.energy_scale
        return energies + self.reference_energies.to(energies.dtype)[z]
