r"""Equivariant convolution: node features times edge harmonics, weighted by a radial MLP.

For an edge :math:`j \to i` with :math:`\vec r_{ij} = \vec x_j - \vec x_i`,

.. math::

    \mathbf m_{ij} = P\big(\mathbf h_j,\; Y(\hat r_{ij});\;
        w = \text{MLP}(\,e(r_{ij})\, u(r_{ij})\,)\big), \qquad
    \mathbf h'_i = \frac{1}{\sqrt{\bar n}} \sum_{j} \mathbf m_{ij}

with :math:`Y` the spherical harmonics up to ``lmax_sh`` ("component" normalisation,
so every component is of unit scale), :math:`e` a Bessel radial basis, :math:`u` the
polynomial envelope (smooth at the cutoff, so energies and forces are), the MLP giving
the per-edge weights of the product :math:`P`, and :math:`\bar n` the average number of
neighbours.  The MLP is initialised so that its outputs are of unit scale, and the
product is rescaled by a constant so that unit inputs give unit-scale outputs, whatever
the backend.  :math:`P` is chosen by name: ``"cg"`` (Clebsch–Gordan, even paths: O(3)
with natural parity), ``"gaunt_grid"`` or ``"gaunt_fourier"`` (the Gaunt product).

The edge geometry (:math:`Y`, :math:`e\,u`) comes in as :class:`geobasis.nn.Edges`,
computed once per forward by the model (:class:`geobasis.nn.EdgeEmbedding`); called with
positions instead, the conv computes it itself (standalone use).

Shapes: ``x [N, (L_in+1)**2, C]`` -> ``[N, (L_out+1)**2, C]``; ``node_dim = 0``.

Reference: Thomas et al., "Tensor field networks" (2018); Batzner et al., NequIP
(Nat. Commun. 2022); the e3nn ``gate_points_2101`` network.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from geobasis import products
from geobasis._chunked import chunked_aggregate
from geobasis._tracing import traced
from geobasis.nn.edges import EdgeEmbedding, Edges
from geobasis.o3 import spherical_harmonics
from geobasis.o3.layout import check_spherical, num_components

__all__ = ["EquivariantConv", "PRODUCTS"]

#: Product backends by name (the registry :data:`geobasis.products.PRODUCTS`).
PRODUCTS = tuple(products.PRODUCTS)


class EquivariantConv(MessagePassing):
    """Equivariant point convolution with per-edge product weights from a radial MLP.

    Args:
        lmax_in: band limit of the input features.
        lmax_out: band limit of the output features.
        channels: channels ``C`` (kept by the product).
        lmax_sh: band limit of the edge harmonics (default ``max(lmax_in, lmax_out)``).
        cutoff: radial cutoff (edges must be shorter).
        num_radial: Bessel functions in the radial basis.
        radial_hidden: width of the radial MLP (two hidden layers, SiLU).
        product: a name of :data:`geobasis.products.PRODUCTS` (``"cg"``, ``"gaunt_grid"``,
            ``"gaunt_fourier"``).
        avg_num_neighbors: messages are summed and divided by its square root.

    ``forward(x, edges)`` with :class:`~geobasis.nn.Edges` (harmonics up to at least
    ``lmax_sh``, ``num_radial`` radial functions), or ``forward(x, pos, edge_index,
    shifts=None, cell=None, batch=None)`` to compute the edge geometry here.
    """

    def __init__(
        self,
        lmax_in: int,
        lmax_out: int,
        channels: int,
        lmax_sh: int | None = None,
        cutoff: float = 5.0,
        num_radial: int = 8,
        radial_hidden: int = 64,
        product: str = "cg",
        avg_num_neighbors: float = 10.0,
    ) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.lmax_in, self.lmax_out, self.channels = lmax_in, lmax_out, channels
        self.lmax_sh = max(lmax_in, lmax_out) if lmax_sh is None else lmax_sh
        self.cutoff, self.num_radial = float(cutoff), num_radial
        self.product_name = product
        self.product = products.make(product, lmax_in, self.lmax_sh, lmax_out, channels)
        self.radial = nn.Sequential(
            nn.Linear(num_radial, radial_hidden),
            nn.SiLU(),
            nn.Linear(radial_hidden, radial_hidden),
            nn.SiLU(),
            nn.Linear(radial_hidden, self.product.weight_numel),
        )
        self.reset_parameters()
        self.norm = 1 / math.sqrt(avg_num_neighbors)
        self.register_buffer("product_scale", self._unit_scale(), persistent=False)

    def reset_parameters(self) -> None:
        """Radial MLP initialised for unit-scale outputs (SiLU gain ~ sqrt(2))."""
        for layer in self.radial:
            if isinstance(layer, nn.Linear):
                gain = 1.0 if layer is self.radial[-1] else math.sqrt(2.0)
                nn.init.normal_(layer.weight, std=gain / math.sqrt(layer.in_features))
                nn.init.zeros_(layer.bias)

    @torch.no_grad()
    def _unit_scale(self) -> Tensor:
        """``1 / RMS`` of the product for unit-variance inputs, harmonics of unit vectors and
        unit weights: the backends differ by orders of magnitude (Gaunt coefficients are
        small), so every conv starts with outputs of unit scale."""
        generator = torch.Generator().manual_seed(0)
        f64 = torch.float64  # the same constant whatever the default dtype
        dim = num_components(self.lmax_in)
        x = torch.randn(256, dim, self.channels, generator=generator, dtype=f64)
        vectors = torch.randn(256, 3, generator=generator, dtype=f64)
        sh = spherical_harmonics(self.lmax_sh, vectors, normalization="component")
        weight = torch.ones(256, *self.product.weight_shape, dtype=f64)
        product = copy.deepcopy(self.product).double()
        rms = product(x, sh, weight).square().mean().sqrt().to(torch.get_default_dtype())
        return 1 / rms.clamp(min=1e-12)

    def embed_edges(self, pos: Tensor, edge_index: Tensor, *periodic: Tensor | None) -> Edges:
        """The :class:`~geobasis.nn.Edges` this conv reads, computed from positions;
        ``periodic`` are the ``shifts, cell, batch`` of a periodic radius graph."""
        # built once, kept outside the module tree: models pass their own Edges, and the
        # state dict (checkpoints) holds no per-conv copy of the constant basis
        embedding = self.__dict__.get("_standalone_embedding")
        if embedding is None:
            embedding = EdgeEmbedding(self.lmax_sh, self.num_radial, self.cutoff)
            self.__dict__["_standalone_embedding"] = embedding
        return embedding.to(pos)(pos, edge_index, *periodic)

    def edge_weights(self, radial: Tensor) -> Tensor:
        """Per-edge product weights ``[E, *product.weight_shape]`` from the enveloped radial
        basis ``[E, num_radial]``."""
        return self.radial(radial).view(-1, *self.product.weight_shape)

    def forward(
        self,
        x: Tensor,
        edges: Edges | Tensor,
        edge_index: Tensor | None = None,
        shifts: Tensor | None = None,
        cell: Tensor | None = None,
        batch: Tensor | None = None,
    ) -> Tensor:
        check_spherical(x, self.lmax_in, self.channels, type(self).__name__)
        if not isinstance(edges, Edges):  # standalone: positions given
            if edge_index is None:
                raise ValueError(
                    "EquivariantConv: pass edges (geobasis.nn.Edges) or pos and edge_index"
                )
            edges = self.embed_edges(edges, edge_index, shifts, cell, batch)
        self._check_edges(edges)
        harmonics = edges.harmonics[:, : num_components(self.lmax_sh)]
        if (self.training and torch.is_grad_enabled()) or traced():
            # training differentiates twice (force loss), torch.func / torch.compile trace:
            # plain autograd over all edges
            weight = self.edge_weights(edges.radial)
            out = self.propagate(edges.index, x=x, harmonics=harmonics, weight=weight)
        else:  # inference, forces included: edge blocks, recomputed in backward
            out = self._blockwise(x, edges.index, harmonics, edges.radial)
        return out * (self.norm * self.product_scale.to(out.dtype))

    def _blockwise(self, x: Tensor, index: Tensor, harmonics: Tensor, radial: Tensor) -> Tensor:
        """The sum of messages in blocks of edges (:func:`geobasis._chunked.chunked_aggregate`):
        memory per edge is the edge geometry alone, not the ``[E, (L+1)**2, C]`` messages
        and the radial MLP's activations."""
        names = [name for name, _ in self.radial.named_parameters()]

        def messages(x_j: Tensor, sh: Tensor, rho: Tensor, *params: Tensor) -> Tensor:
            mlp = torch.func.functional_call(
                self.radial, dict(zip(names, params, strict=True)), rho
            )
            return self.product(x_j, sh, mlp.view(-1, *self.product.weight_shape))

        params = tuple(self.radial.parameters())
        return chunked_aggregate(messages, x, index, (harmonics, radial), params, x.shape[0],
                                 self.edge_block)  # fmt: skip

    @property
    def edge_block(self) -> int:
        """Edges per block: about 32 MiB of per-edge intermediates."""
        per_edge = 4 * (
            self.product.weight_numel + 3 * num_components(self.lmax_out) * self.channels
        )
        return max(256, min(16384, 2**25 // max(per_edge, 1)))

    def _check_edges(self, edges: Edges) -> None:
        if edges.harmonics.shape[-1] < num_components(self.lmax_sh):
            raise ValueError(
                f"EquivariantConv: edges carry harmonics up to l={edges.lmax}, this conv "
                f"needs lmax_sh={self.lmax_sh}; embed the edges with a higher lmax"
            )
        if edges.radial.shape[-1] != self.num_radial:
            raise ValueError(
                f"EquivariantConv: edges carry {edges.radial.shape[-1]} radial functions, "
                f"this conv was built with num_radial={self.num_radial}"
            )

    def message(self, x_j: Tensor, harmonics: Tensor, weight: Tensor) -> Tensor:
        if self.training and torch.is_grad_enabled():
            # training differentiates twice (force loss): the plain autograd form is faster
            return self.product.plain(x_j, harmonics, weight)
        return self.product(x_j, harmonics, weight)

    def extra_repr(self) -> str:
        return (
            f"lmax_in={self.lmax_in}, lmax_out={self.lmax_out}, lmax_sh={self.lmax_sh}, "
            f"channels={self.channels}, cutoff={self.cutoff}, product={self.product_name!r}"
        )
