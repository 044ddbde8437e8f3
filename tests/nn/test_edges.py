"""EdgeEmbedding: the edge geometry a model computes once per forward."""

import torch

from geobasis.graph import radius_graph
from geobasis.nn import EdgeEmbedding, Edges
from geobasis.o3 import random_orthogonal, spherical_harmonics, wigner_D
from geobasis.radial import BesselBasis, PolynomialEnvelope


def test_edges_are_vectors_harmonics_and_enveloped_bessel_basis():
    pos = torch.randn(20, 3, dtype=torch.float64) * 2
    edge_index = radius_graph(pos, 3.0)
    edges = EdgeEmbedding(3, 6, 3.0).double()(pos, edge_index)
    assert isinstance(edges, Edges) and edges.lmax == 3
    src, dst = edge_index
    vectors = pos[src] - pos[dst]
    assert torch.allclose(edges.vectors, vectors) and torch.allclose(
        edges.lengths, vectors.norm(dim=-1)
    )
    expected = spherical_harmonics(3, vectors, normalization="component")
    assert torch.allclose(edges.harmonics, expected, atol=1e-12)
    length = vectors.norm(dim=-1)
    radial = BesselBasis(6, 3.0).double()(length) * PolynomialEnvelope(3.0)(length)[:, None]
    assert torch.allclose(edges.radial, radial, atol=1e-12)


def test_harmonics_rotate_and_radial_part_is_invariant():
    pos = torch.randn(15, 3, dtype=torch.float64) * 2
    edge_index = radius_graph(pos, 3.0)
    embed = EdgeEmbedding(2, 4, 3.0).double()
    R = random_orthogonal(dtype=torch.float64)
    a, b = embed(pos, edge_index), embed(pos @ R.T, edge_index)
    assert torch.allclose(b.harmonics, a.harmonics @ wigner_D(2, R).T, atol=1e-10)
    assert torch.allclose(b.radial, a.radial, atol=1e-12)


def test_periodic_edges_use_the_image_shifts():
    cell = torch.eye(3, dtype=torch.float64) * 4.0
    pos = torch.rand(10, 3, dtype=torch.float64) * 4.0
    edge_index, shifts = radius_graph(pos, 3.0, cell=cell)
    edges = EdgeEmbedding(1, 4, 3.0).double()(pos, edge_index, shifts, cell)
    src, dst = edge_index
    expected = pos[src] + shifts.to(pos.dtype) @ cell - pos[dst]
    assert torch.allclose(edges.vectors, expected) and bool((edges.lengths < 3.0).all())
