r"""FAENet-style potential: a plain message-passing network on Cartesian coordinates, made
E(3)-invariant by frame averaging instead of by architecture.

The network reads raw edge vectors :math:`\vec r_{ij}` (not only their lengths), so on its
own it is neither rotation nor reflection invariant:

.. math::

    \mathbf f_{ij} = \text{MLP}\big([\,e(r_{ij}),\ \vec r_{ij}/r_c\,]\big)\, u(r_{ij}), \qquad
    \mathbf h_i \leftarrow \mathbf h_i + \text{MLP}\Big(\frac{1}{\sqrt{\bar n}}
    \sum_j \mathbf f_{ij} \odot W \mathbf h_j\Big), \qquad
    \varepsilon_i = \text{MLP}(\mathbf h_i),

with :math:`e` a Bessel basis and :math:`u` the polynomial envelope.  :class:`FAENet`
evaluates it in the PCA frames of each molecule (:mod:`geobasis.frames`) and averages the
atomic energies: exactly invariant with all frames, invariant in expectation with one
random frame per molecule and step (the stochastic frame averaging FAENet trains with).
Forces are :math:`-\partial E/\partial \vec x` through the averaging, so they are
conservative.

Reference: Duval et al., "FAENet: Frame Averaging Equivariant GNN for Materials
Modeling", ICML 2023; Puny et al., "Frame Averaging for Invariant and Equivariant Network
Design", ICLR 2022.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn.inits import reset
from torch_geometric.utils import scatter

from geobasis.frames import FrameAveraging
from geobasis.nn.models.atomistic import NUM_ELEMENTS, AtomicGraph, AtomisticModel
from geobasis.radial import BesselBasis, PolynomialEnvelope

__all__ = ["CartesianMPNN", "FAENet", "FRAME_MODES"]

FRAME_MODES = ("stochastic", "full")


def _mlp(a: int, b: int, c: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(a, b), nn.SiLU(), nn.Linear(b, c))


class CartesianMPNN(nn.Module):
    """Message passing on Cartesian edge vectors (not invariant by itself).

    ``forward(data)`` reads ``pos [N, 3]``, ``z [N]``, ``edge_index`` and returns
    ``{"atomic_energy": [N]}``.
    """

    def __init__(
        self,
        channels: int = 64,
        num_layers: int = 3,
        cutoff: float = 5.0,
        num_radial: int = 8,
        avg_num_neighbors: float = 10.0,
    ) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.norm = 1.0 / math.sqrt(avg_num_neighbors)
        self.embedding = nn.Embedding(NUM_ELEMENTS, channels)
        self.radial = BesselBasis(num_radial, cutoff)
        self.envelope = PolynomialEnvelope(cutoff)
        layers = range(num_layers)
        self.filters = nn.ModuleList(_mlp(num_radial + 3, channels, channels) for _ in layers)
        self.sources = nn.ModuleList(nn.Linear(channels, channels, bias=False) for _ in layers)
        self.updates = nn.ModuleList(_mlp(channels, channels, channels) for _ in layers)
        self.readout = _mlp(channels, channels, 1)

    def reset_parameters(self) -> None:
        """Re-initialise every submodule's parameters (PyG's ``reset``)."""
        for child in self.children():
            reset(child)

    def forward(self, data) -> dict[str, Tensor]:
        pos, (src, dst) = data.pos, data.edge_index
        vectors = pos[src] - pos[dst]
        length = torch.linalg.vector_norm(vectors, dim=-1)
        envelope = self.envelope(length)[:, None]
        edge = torch.cat([self.radial(length), vectors / self.cutoff], -1)
        h = self.embedding(data.z.long())
        for filt, source, update in zip(self.filters, self.sources, self.updates, strict=True):
            message = filt(edge) * envelope * source(h)[src]
            h = h + update(self.norm * scatter(message, dst, 0, dim_size=h.shape[0]))
        return {"atomic_energy": self.readout(h)[:, 0]}


class FAENet(AtomisticModel):
    """Frame-averaged :class:`CartesianMPNN` potential; same interface as
    :class:`~geobasis.nn.Potential` (``model(data)`` -> ``energy``, ``forces``).

    Args:
        channels: width of the network.
        num_layers: message-passing layers.
        cutoff: radial cutoff in Å.
        num_radial: Bessel functions of the radial basis.
        group: frames of ``"O3"`` (8 frames; invariant to reflections too) or ``"SO3"``
            (4 frames).
        frames: ``"stochastic"`` (one random frame per molecule and training step, as
            FAENet trains) or ``"full"`` (every frame in training too); evaluation always
            averages over every frame, so predictions are exactly invariant.
        avg_num_neighbors: normalisation of the neighbour sums (the trainer sets it from
            the training data).
    """

    name: ClassVar[str] = "faenet"
    option_choices: ClassVar[dict[str, tuple]] = {"group": ("O3", "SO3"), "frames": FRAME_MODES}
    supports_compile: ClassVar[bool] = False  # frames come from eigh: not traceable

    def __init__(
        self,
        channels: int = 32,
        num_layers: int = 3,
        cutoff: float = 5.0,
        num_radial: int = 8,
        group: str = "O3",
        frames: str = "stochastic",
        avg_num_neighbors: float = 10.0,
    ) -> None:
        super().__init__()
        self.record_options(locals())
        self.cutoff = float(cutoff)
        self.frames = frames
        self.network = CartesianMPNN(channels, num_layers, cutoff, num_radial, avg_num_neighbors)
        self.averaging = FrameAveraging(
            self.network,
            group,
            outputs={"atomic_energy": {"kind": "invariant", "level": "node"}},
        )

    def node_energies(self, graph: AtomicGraph) -> Tensor:
        """``[N]`` frame-averaged unit-scale atomic energies (molecules only)."""
        if graph.cell is not None:
            raise ValueError("FAENet (frame averaging) does not support periodic cells")
        view = Data(pos=graph.pos, z=graph.z, batch=graph.batch, edge_index=graph.edge_index)
        stochastic = self.training and self.frames == "stochastic"
        self.averaging.mode = "stochastic" if stochastic else "full"
        return self.averaging(view)["atomic_energy"]
