r"""Graph regression with GINE layers and a choice of positional encoding.

.. math::

    \mathbf h^{(0)}_i = W\,[\,\text{emb}(z_i),\ \text{PE}_i\,], \qquad
    \mathbf h^{(t+1)}_i = \mathbf h^{(t)}_i + \text{MLP}\Big((1 + \epsilon)\mathbf h^{(t)}_i
    + \sum_{j \in \mathcal N(i)} \operatorname{ReLU}(\mathbf h^{(t)}_j + W_e \mathbf e_{ij})
    \Big), \qquad y = \text{MLP}\Big(\sum_i \mathbf h^{(T)}_i\Big)

with edge features :math:`\mathbf e_{ij}` a Gaussian expansion of the bond length and PE
one of ``"none"``, ``"lap"`` (:class:`~geobasis.pe.LaplacianPE`, random signs in
training), ``"rw"`` (:class:`~geobasis.pe.RandomWalkPE`, read from ``data.rw_pe``),
``"signnet"`` (:class:`~geobasis.pe.SignNet`) or ``"spe"`` (:class:`~geobasis.pe.SPE`).
The eigenpair-based encodings read ``data.eigvecs``, ``data.eigvals``, ``data.eigmask``
(:class:`~geobasis.pe.AddLaplacianEigenpairs`).

Reference: Hu et al., "Strategies for Pre-training Graph Neural Networks" (GINE, ICLR
2020); the encodings' papers in :mod:`geobasis.pe`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import GINEConv, global_add_pool
from torch_geometric.nn.inits import reset

from geobasis.nn.models.atomistic import NUM_ELEMENTS
from geobasis.pe import SPE, LaplacianPE, SignNet
from geobasis.radial import GaussianBasis

__all__ = ["GINERegressor", "PE_CHOICES"]

PE_CHOICES = ("none", "lap", "rw", "signnet", "spe")


class GINERegressor(nn.Module):
    """GINE + positional encoding -> one scalar per graph.

    Args:
        pe: one of :data:`PE_CHOICES`.
        hidden: node width.
        num_layers: GINE layers.
        pe_dim: width of the encoding fed to the first layer.
        k: stored eigenpairs used by ``signnet`` and ``spe``; ``lap`` uses pairs 2..k (the
            first is constant).
        rw_steps: random-walk steps stored in ``data.rw_pe``.
        bond_basis, max_bond: Gaussian expansion of bond lengths (Å).

    ``forward(data)`` -> ``[B]``.
    """

    def __init__(
        self,
        pe: str = "none",
        hidden: int = 64,
        num_layers: int = 4,
        pe_dim: int = 16,
        k: int = 8,
        rw_steps: int = 16,
        bond_basis: int = 16,
        max_bond: float = 2.0,
    ) -> None:
        super().__init__()
        if pe not in PE_CHOICES:
            raise ValueError(f"pe must be one of {PE_CHOICES}, got {pe!r}")
        self.config: dict[str, Any] = {
            "pe": pe,
            "hidden": hidden,
            "num_layers": num_layers,
            "pe_dim": pe_dim,
            "k": k,
            "rw_steps": rw_steps,
        }
        self.pe_name = pe
        self.embedding = nn.Embedding(NUM_ELEMENTS, hidden)
        self.encoder: nn.Module | None
        if pe == "lap":
            self.laplacian = LaplacianPE(k - 1, sign="random")  # pairs 2..k
            self.encoder = nn.Linear(k - 1, pe_dim)
        elif pe == "rw":
            self.encoder = nn.Linear(rw_steps, pe_dim)
        elif pe == "signnet":
            self.encoder = SignNet(k, pe_dim, hidden=16)
        elif pe == "spe":
            self.encoder = SPE(pe_dim, num_filters=8, phi_hidden=16, rho_hidden=16)
        else:
            self.encoder = None
        width = hidden + (pe_dim if self.encoder is not None else 0)
        self.input = nn.Linear(width, hidden)
        self.bonds = GaussianBasis(bond_basis, max_bond, start=0.8)
        self.convs = nn.ModuleList(
            GINEConv(
                nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden)),
                train_eps=True,
                edge_dim=bond_basis,
            )
            for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))
        self.readout = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def encoding(self, data) -> Tensor | None:
        """``[N, pe_dim]`` positional encoding of the nodes (None without one)."""
        batch = data.batch
        if self.pe_name == "lap":
            return self.encoder(self.laplacian(data.eigvecs, None, None, None, batch))
        if self.pe_name == "rw":
            return self.encoder(data.rw_pe)
        if self.pe_name in ("signnet", "spe"):
            return self.encoder(data.eigvecs, data.eigvals, data.eigmask, data.edge_index, batch)
        return None

    def reset_parameters(self) -> None:
        """Re-initialise every submodule's parameters (PyG's ``reset``)."""
        for child in self.children():
            reset(child)

    def forward(self, data) -> Tensor:
        h = self.embedding(data.z.long())
        pe = self.encoding(data)
        if pe is not None:
            h = torch.cat([h, pe.to(h.dtype)], -1)
        h = self.input(h)
        src, dst = data.edge_index
        length = torch.linalg.vector_norm(data.pos[src] - data.pos[dst], dim=-1)
        edge_attr = self.bonds(length).to(h.dtype)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = h + torch.relu(norm(conv(h, data.edge_index, edge_attr)))
        return self.readout(global_add_pool(h, data.batch))[:, 0]
