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
from torch_geometric.utils import scatter

from geobasis.graph import radius_graph
from geobasis.nn.activation import Gate, S2Activation
from geobasis.nn.conv.equivariant import EquivariantConv
from geobasis.nn.linear import EquivariantLinear

__all__ = ["Potential"]

NUM_ELEMENTS = 119  # atomic numbers 0..118


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


class Potential(nn.Module):
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
        self.register_buffer("reference_energies", torch.zeros(NUM_ELEMENTS))
        self.register_buffer("energy_scale", torch.ones(()))

    # ------------------------------------------------------------------ energies
    @torch.no_grad()
    def fit_reference_energies(self, z: Tensor, batch: Tensor, energy: Tensor) -> Tensor:
        r"""Least-squares per-element energies :math:`E_g \approx \sum_{i \in g}
        E^\text{ref}_{z_i}` over training graphs; stored and returned ``[119]``.

        Also sets the energy scale to the RMS residual per atom (at least 1e-3 eV).
        """
        num_graphs = energy.shape[0]
        counts = torch.zeros(num_graphs, NUM_ELEMENTS, dtype=torch.float64, device=z.device)
        counts.index_put_((batch, z), torch.ones_like(z, dtype=torch.float64), accumulate=True)
        present = counts.sum(0) > 0
        solution = torch.linalg.lstsq(
            counts[:, present].cpu(), energy.double().cpu()[:, None], driver="gelsd"
        ).solution[:, 0]
        reference = torch.zeros(NUM_ELEMENTS, dtype=torch.float64)
        reference[present.cpu()] = solution
        residual = energy.double().cpu() - counts.cpu() @ reference
        atoms = counts.sum(1).cpu()
        scale = torch.sqrt((residual**2).sum() / atoms.sum()).clamp(min=1e-3)
        self.reference_energies.copy_(reference)
        self.energy_scale.fill_(float(scale))
        return self.reference_energies

    def atomic_energies(self, data, pos: Tensor, cell: Tensor | None) -> Tensor:
        """``[N]`` atomic energies (reference energies included) at positions ``pos``."""
        z = data.z.long()
        batch = _batch_of(data, pos)
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

    def forward(
        self, data, compute_forces: bool = True, compute_stress: bool | None = None
    ) -> dict[str, Tensor]:
        """Energy ``[B]``, forces ``[N, 3]`` and (with a cell) stress ``[B, 3, 3]``."""
        if getattr(data, "z", None) is None or getattr(data, "pos", None) is None:
            raise ValueError("data needs `pos` [N, 3] and `z` [N] (atomic numbers)")
        pos = data.pos
        batch = _batch_of(data, pos)
        num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        cell = getattr(data, "cell", None)
        if cell is not None:
            cell = cell.to(pos.dtype).reshape(-1, 3, 3)
        compute_stress = (cell is not None) if compute_stress is None else compute_stress
        if compute_stress and cell is None:
            raise ValueError("stress needs a cell: set data.cell [B, 3, 3]")
        leaves = []
        if compute_forces or compute_stress:
            if not pos.requires_grad:
                pos = pos.detach().requires_grad_()
            leaves.append(pos)
        if compute_stress:
            strain = pos.new_zeros(num_graphs, 3, 3, requires_grad=True)
            symmetric = 0.5 * (strain + strain.transpose(1, 2))
            pos = pos + torch.einsum("ni,nij->nj", pos, symmetric[batch])
            cell = cell + torch.bmm(cell, symmetric)
            leaves.append(strain)
        atomic = self.atomic_energies(data, pos, cell)
        energy = scatter(atomic, batch, dim=0, dim_size=num_graphs, reduce="sum")
        out = {"energy": energy}
        if leaves:
            # training on forces differentiates them again: keep the graph
            grads = torch.autograd.grad(
                energy.sum(), leaves, create_graph=self.training, allow_unused=True
            )  # unused: no edges at all (isolated atoms) -> zero forces / stress
            grads = [
                torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads, strict=True)
            ]
            if compute_forces:
                out["forces"] = -grads[0]
            if compute_stress:
                volume = torch.linalg.det(cell).abs()
                out["stress"] = grads[-1] / volume[:, None, None]
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def _batch_of(data, pos: Tensor) -> Tensor:
    batch = getattr(data, "batch", None)
    if batch is None:
        return torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    return batch
