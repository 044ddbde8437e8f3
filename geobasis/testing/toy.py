"""A small spherical-harmonics potential used by ``geobasis check`` and the examples."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn.inits import reset

from geobasis.graph import edge_vectors, radius_graph
from geobasis.o3 import spherical_harmonics
from geobasis.radial import BesselBasis, PolynomialEnvelope

__all__ = ["ToyPotential"]


class ToyPotential(nn.Module):
    r"""One message-passing step, :math:`h_i = \sum_j R(r_{ij}) Y(\hat r_{ij})`, energy
    :math:`E = \sum |h|^2`.

    Returns ``{"energy": [B], "features": [N, (lmax+1)**2, C]}``; equivariant by
    construction, so it is a reference for the testing toolkit.
    """

    def __init__(
        self, lmax: int = 2, channels: int = 8, cutoff: float = 3.0, num_elements: int = 10
    ) -> None:
        super().__init__()
        self.lmax, self.cutoff = lmax, cutoff
        self.radial = BesselBasis(6, cutoff)
        self.envelope = PolynomialEnvelope(cutoff)
        self.mix = nn.Linear(6, channels)
        self.embed = nn.Embedding(num_elements, channels)

    def reset_parameters(self) -> None:
        """Re-initialise every submodule's parameters (PyG's ``reset``)."""
        for child in self.children():
            reset(child)

    def forward(self, data) -> dict[str, Tensor]:
        pos, batch = data.pos, data.batch
        if batch is None:
            batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
        edge_index = radius_graph(pos, self.cutoff, batch)
        vec, length = edge_vectors(pos, edge_index)
        weight = self.mix(self.radial(length)) * self.envelope(length)[:, None]
        weight = weight * self.embed(data.z[edge_index[0]])
        message = spherical_harmonics(self.lmax, vec)[:, :, None] * weight[:, None, :]
        features = pos.new_zeros(pos.shape[0], (self.lmax + 1) ** 2, weight.shape[-1])
        features = features.index_add(0, edge_index[1], message)
        atom_energy = (features**2).sum((1, 2))
        num_graphs = getattr(data, "num_graphs", None)  # a trailing empty graph counts
        if not isinstance(num_graphs, int):
            num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        energy = pos.new_zeros(num_graphs).index_add(0, batch, atom_energy)
        return {"energy": energy, "features": features}
