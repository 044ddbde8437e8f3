"""EquivariantConv: equivariance, per-edge sums, precomputed edges, gradients, errors."""

import pytest
import torch
from torch_geometric.data import Data

from geobasis.graph import radius_graph
from geobasis.nn import PRODUCTS, EquivariantConv
from geobasis.testing import assert_equivariant


def _features(n=12, lmax=2, channels=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g, dtype=torch.float64) * 1.2
    h = torch.randn(n, (lmax + 1) ** 2, channels, generator=g, dtype=torch.float64)
    return Data(pos=pos, h=h)


@pytest.mark.parametrize("product", PRODUCTS)
def test_conv_equivariant_under_e3_and_permutations(product):
    conv = EquivariantConv(2, 2, 4, cutoff=2.0, product=product).double()
    data = _features(channels=4)

    def model(d):
        return {"y": conv(d.h, d.pos, radius_graph(d.pos, 2.0))}

    report = assert_equivariant(model, data, outputs={"y": 2}, inputs={"h": 2})
    assert report is not None
    y = model(data)["y"]
    assert y.abs().max() > 1e-3  # not trivially zero


def test_conv_changes_degree_and_matches_a_per_edge_sum():
    conv = EquivariantConv(1, 3, 3, lmax_sh=2, cutoff=2.5).double()
    data = _features(lmax=1, channels=3)
    edge_index = radius_graph(data.pos, 2.5)
    y = conv(data.h, data.pos, edge_index)
    assert y.shape == (12, 16, 3)
    src, dst = edge_index
    from geobasis.o3 import spherical_harmonics
    from geobasis.radial import BesselBasis, PolynomialEnvelope

    vec = data.pos[src] - data.pos[dst]
    length = vec.norm(dim=-1)
    radial = BesselBasis(8, 2.5).double()(length) * PolynomialEnvelope(2.5)(length)[:, None]
    weight = conv.edge_weights(radial)
    sh = spherical_harmonics(2, vec, normalization="component")
    messages = conv.product(data.h[src], sh, weight)
    expected = torch.zeros_like(y).index_add(0, dst, messages) * conv.norm
    assert torch.allclose(y, expected * conv.product_scale, atol=1e-12)


def test_conv_gradcheck():
    conv = EquivariantConv(1, 1, 2, cutoff=2.0, radial_hidden=8).double()
    data = _features(n=6, lmax=1, channels=2)
    edge_index = radius_graph(data.pos, 2.0)
    pos = data.pos.clone().requires_grad_()
    h = data.h.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda h, p: conv(h, p, edge_index), (h, pos))
    assert torch.autograd.gradgradcheck(lambda h, p: conv(h, p, edge_index), (h, pos))


def test_conv_scale_constant_does_not_depend_on_the_default_dtype():
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        a = EquivariantConv(2, 2, 4, product="gaunt_grid").product_scale.item()
    finally:
        torch.set_default_dtype(previous)
    b = EquivariantConv(2, 2, 4, product="gaunt_grid").product_scale.item()
    assert abs(a - b) < 1e-6 * abs(a)  # a checkpoint reloads to the same model


def test_conv_reads_precomputed_edges_like_positions():
    """``conv(x, edges)`` (geometry computed once, harmonics of a higher degree sliced) equals
    the standalone ``conv(x, pos, edge_index)``; mismatched edges are refused clearly."""
    from geobasis.nn import EdgeEmbedding

    conv = EquivariantConv(1, 2, 3, cutoff=2.5, num_radial=6).double()
    data = _features(lmax=1, channels=3)
    edge_index = radius_graph(data.pos, 2.5)
    edges = EdgeEmbedding(4, 6, 2.5).double()(data.pos, edge_index)
    assert edges.lmax == 4 and edges.radial.shape == (edge_index.shape[1], 6)
    assert torch.allclose(conv(data.h, edges), conv(data.h, data.pos, edge_index), atol=1e-12)
    with pytest.raises(ValueError, match="lmax_sh=2"):
        conv(data.h, EdgeEmbedding(1, 6, 2.5).double()(data.pos, edge_index))
    with pytest.raises(ValueError, match="num_radial=6"):
        conv(data.h, EdgeEmbedding(2, 8, 2.5).double()(data.pos, edge_index))
    with pytest.raises(ValueError, match="edge_index"):
        conv(data.h, data.pos)


def test_unknown_product_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown product 'tensor'; choose one of"):
        EquivariantConv(1, 1, 2, product="tensor")


@pytest.mark.parametrize("product", PRODUCTS)
def test_edge_blocks_of_inference_equal_the_training_path(product):
    """Inference sums messages in edge blocks recomputed in backward; training keeps the
    plain graph for the force loss: same values and position gradients."""
    conv = EquivariantConv(2, 2, 3, cutoff=2.5, product=product).double()
    data = _features(n=20, channels=3)
    pos = data.pos.clone().requires_grad_()
    edge_index = radius_graph(pos.detach(), 2.5)
    results = []
    for mode in (conv.train, conv.eval):
        mode()
        y = conv(data.h, pos, edge_index)
        (grad,) = torch.autograd.grad(y.square().sum(), pos)
        results.append((y.detach(), grad))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-12)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-10)
