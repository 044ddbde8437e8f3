"""Per-node equivariant layers: linear, gate, S² activation, RMS norm (reset contract too)."""

import pytest
import torch
from torch_geometric.data import Data

from geobasis.nn import (
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


def test_errors():
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


def test_every_layer_resets_its_parameters():
    """PyG's contract: ``reset_parameters()`` re-draws what initialisation drew."""
    from geobasis.nn import EquivariantRMSNorm, Gate, Potential

    torch.manual_seed(0)
    layers = [
        EquivariantConv(1, 1, 2, cutoff=2.0, radial_hidden=8),
        EquivariantLinear(2, 3, 4),
        Gate(2, 3),
        Potential(channels=4, lmax=1, num_layers=1),
    ]
    for layer in layers:
        before = [p.detach().clone() for p in layer.parameters()]
        layer.reset_parameters()
        after = list(layer.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, after)), type(layer).__name__
    norm = EquivariantRMSNorm(1, 2)
    with torch.no_grad():
        norm.scale.mul_(3)
    norm.reset_parameters()
    assert torch.equal(norm.scale, torch.ones_like(norm.scale))


def test_products_and_trainable_bases_reset_to_their_initial_values():
    from geobasis.pe import SPE
    from geobasis.products import ClebschGordanProduct, GauntGridProduct
    from geobasis.radial import BesselBasis, GaussianBasis

    gaunt = GauntGridProduct(1, 1, 1, 2)
    bessel = BesselBasis(4, 3.0, trainable=True)
    gaussian = GaussianBasis(5, 3.0, trainable=True)
    spe = SPE(4)
    expected = [p.detach().clone() for m in (gaunt, bessel, gaussian) for p in m.parameters()]
    with torch.no_grad():
        for module in (gaunt, bessel, gaussian, spe):
            for p in module.parameters():
                p.add_(1.0)
    for module in (gaunt, bessel, gaussian, spe):
        module.reset_parameters()
    restored = [p for m in (gaunt, bessel, gaussian) for p in m.parameters()]
    for a, b in zip(expected, restored, strict=True):
        assert torch.allclose(a, b)
    assert torch.equal(spe.eps, torch.zeros_like(spe.eps))
    cg = ClebschGordanProduct(1, 1, 1, 2)
    before = cg.weight.detach().clone()
    cg.reset_parameters()
    assert not torch.equal(before, cg.weight)
