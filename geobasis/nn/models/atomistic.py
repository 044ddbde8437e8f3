r"""Shared machinery of the models that map atoms to energies, forces and stress.

.. math::

    E_g = \sum_{i \in g} \varepsilon_i, \qquad
    \mathbf F_i = -\frac{\partial E}{\partial \vec x_i}, \qquad
    \sigma = \frac{1}{V} \frac{\partial E}{\partial \epsilon}

A subclass implements :meth:`AtomisticModel.atomic_energies` (``[N]``, per-element
reference energies included); this base class sums them per graph, differentiates
(forces, and stress through a symmetric strain :math:`\epsilon` of positions and
cell), and fits the reference energies by least squares.  The graph of the derivative is
kept in training mode, where force losses are differentiated again.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

__all__ = ["AtomisticModel", "NUM_ELEMENTS", "batch_of"]

NUM_ELEMENTS = 119  # atomic numbers 0..118


def batch_of(data, pos: Tensor) -> Tensor:
    """``data.batch``, or zeros (one graph) when it is absent."""
    batch = getattr(data, "batch", None)
    if batch is None:
        return torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    return batch


class _Graph:
    """The fields of a molecular batch that :meth:`AtomisticModel.atomic_energies` reads."""

    def __init__(self, z: Tensor, batch: Tensor, edge_index: Tensor) -> None:
        self.z, self.batch, self.edge_index, self.shifts = z, batch, edge_index, None


class AtomisticModel(nn.Module):
    """Base class: energies from :meth:`atomic_energies`, forces and stress by autograd.

    Subclasses set ``self.config`` (a dict of constructor arguments plus ``"model"``, the
    name under which :data:`geobasis.nn.models.MODELS` rebuilds them).
    """

    config: dict[str, Any]

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("reference_energies", torch.zeros(NUM_ELEMENTS))
        self.register_buffer("energy_scale", torch.ones(()))

    def atomic_energies(self, data, pos: Tensor, cell: Tensor | None) -> Tensor:
        """``[N]`` atomic energies (reference energies included) at positions ``pos``."""
        raise NotImplementedError

    def atomic_energies_and_forces(
        self, pos: Tensor, z: Tensor, batch: Tensor, edge_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(atomic energies [N], forces [N, 3])`` of a molecular batch (no cell), the forces
        from ``torch.func.grad``: no ``autograd.grad`` call inside, so ``torch.compile`` can
        trace the whole computation, and a loss on the forces can be backpropagated to the
        parameters through the compiled graph (``geobasis train --compile``).
        """
        graph = _Graph(z, batch, edge_index)

        def total(p: Tensor) -> tuple[Tensor, Tensor]:
            atomic = self.atomic_energies(graph, p, None)
            return atomic.sum(), atomic

        gradient, atomic = torch.func.grad(total, has_aux=True)(pos)
        return atomic, -gradient

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

    def forward(
        self, data, compute_forces: bool = True, compute_stress: bool | None = None
    ) -> dict[str, Tensor]:
        """Energy ``[B]``, forces ``[N, 3]`` and (with a cell) stress ``[B, 3, 3]``."""
        if getattr(data, "z", None) is None or getattr(data, "pos", None) is None:
            raise ValueError("data needs `pos` [N, 3] and `z` [N] (atomic numbers)")
        pos = data.pos
        batch = batch_of(data, pos)
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
