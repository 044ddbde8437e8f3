"""Equivariant layers: linear, gate, S² activation, RMS norm, convolution."""

import pytest
import torch
from torch_geometric.data import Data

from geobasis.graph import radius_graph
from geobasis.nn import (
    PRODUCTS,
    EquivariantConv,
    EquivariantLinear,
    EquivariantRMSNorm,
    Gate,
    S2Activation,
)
from geobasis.o3 import random_orthogonal, wigner_D
from geobasis.testing import assert_equivariant


def _features(n=12, lmax=2, channels=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g, dtype=torch.float64) * 1.2
    h = torch.randn(n, (lmax + 1) ** 2, channels, generator=g, dtype=torch.float64)
    return Data(pos=pos, h=h)


def _pointwise(layer, lmax, **kwargs):
    """Check a per-node layer through the toolkit (rotations, reflections, permutations)."""
    layer = layer.double()
    data = _features(lmax=lmax, channels=kwargs.get("channels", 5))
    assert_equivariant(
        lambda d: {"y": layer(d.h)},
        data,
        outputs={"y": kwargs.get("out_lmax", lmax)},
        inputs={"h": lmax},
        atol=kwargs.get("atol", 1e-12),
        rtol=kwargs.get("rtol", 1e-10),
    )


@pytest.mark.parametrize("lmax", [0, 1, 3])
def test_linear_equivariant_and_mixes_channels_per_degree(lmax):
    layer = EquivariantLinear(lmax, 5, 7).double()
    _pointwise(layer, lmax)
    x = torch.randn(4, (lmax + 1) ** 2, 5, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (4, (lmax + 1) ** 2, 7)
    reference = torch.einsum(
        "ndc,dco->ndo",
        x,
        torch.cat([layer.weight[l].expand(2 * l + 1, 5, 7) for l in range(lmax + 1)]) / 5**0.5,
    )
    reference[:, 0] += layer.bias
    assert torch.allclose(y, reference, atol=1e-12)


@pytest.mark.parametrize("lmax", [0, 2, 3])
def test_gate_equivariant(lmax):
    _pointwise(Gate(lmax, 5), lmax)


def test_gate_scalars_and_gates():
    gate = Gate(1, 3).double()
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    y = gate(x)
    assert torch.allclose(y[:, 0], torch.nn.functional.silu(x[:, 0]))
    ratio = y[:, 1:] / x[:, 1:]  # one invariant factor per (node, channel), in (0, 1)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio))
    assert (ratio > 0).all() and (ratio < 1).all()


def test_rms_norm_equivariant_and_normalised():
    norm = EquivariantRMSNorm(2, 5)
    _pointwise(norm, 2)
    x = torch.randn(8, 9, 5, dtype=torch.float64) * 30
    y = norm.double()(x)
    for l in range(3):
        block = y[:, l * l : (l + 1) ** 2]
        assert torch.allclose(
            block.square().mean((1, 2)), torch.ones(8, dtype=torch.float64), atol=1e-6
        )
    assert torch.allclose(y[:, 0].mean(-1), torch.zeros(8, dtype=torch.float64), atol=1e-12)


def test_s2_activation_is_approximately_equivariant_and_improves_with_resolution():
    x = torch.randn(20, 9, 4, dtype=torch.float64)
    R = random_orthogonal(dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    D = wigner_D(2, R).to(torch.float64)
    errors = []
    for resolution in (2, 4, 8):
        act = S2Activation(2, resolution=resolution).double()
        errors.append(float((act(D @ x) - D @ act(x)).abs().max() / act(x).abs().max()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3
    # exact for an activation that is a polynomial the grid integrates: x -> x^2 at res 4
    square = S2Activation(2, activation=torch.square, resolution=4).double()
    assert torch.allclose(square(D @ x), D @ square(x), atol=1e-12)


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

    vec = data.pos[src] - data.pos[dst]
    weight = conv.edge_weights(vec.norm(dim=-1))
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


def test_errors():
    with pytest.raises(ValueError, match="unknown product"):
        EquivariantConv(1, 1, 2, product="tensor")
    with pytest.raises(ValueError, match=r"expected x of shape \[..., 4, 5\]"):
        EquivariantLinear(1, 5, 5)(torch.randn(3, 9, 5))
    with pytest.raises(ValueError, match="Gate"):
        Gate(2, 4)(torch.randn(3, 9, 5))
    with pytest.raises(ValueError, match="S2Activation"):
        S2Activation(2)(torch.randn(3, 4, 5))
    with pytest.raises(ValueError, match="resolution"):
        S2Activation(2, resolution=1)
    with pytest.raises(ValueError, match="lmax"):
        EquivariantLinear(-1, 2, 2)


def test_conv_scale_constant_does_not_depend_on_the_default_dtype():
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        a = EquivariantConv(2, 2, 4, product="gaunt_grid").product_scale.item()
    finally:
        torch.set_default_dtype(previous)
    b = EquivariantConv(2, 2, 4, product="gaunt_grid").product_scale.item()
    assert abs(a - b) < 1e-6 * abs(a)  # a checkpoint reloads to the same model
