"""GauntBracketProduct: the odd CG paths (and, with ``paths="all"``, every path) on an S²
grid through the spherical Poisson bracket; exact, O(3)-equivariant with pseudotensor
parity, differentiable twice, compilable."""

import pytest
import torch

from geobasis import o3
from geobasis.o3.coupling import coupling_paths
from geobasis.products import ClebschGordanProduct, GauntBracketProduct, bracket_factor

D = torch.float64


def _inputs(lmax1, lmax2, batch=6, channels=3, seed=0, single=False):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(batch, (lmax1 + 1) ** 2, channels, generator=g, dtype=D)
    shape = (batch, (lmax2 + 1) ** 2) if single else (batch, (lmax2 + 1) ** 2, channels)
    return x1, torch.randn(*shape, generator=g, dtype=D)


def test_the_bracket_reaches_exactly_the_odd_paths():
    """Its coupling is a nonzero multiple of the CG coefficients on every odd path up to
    degree 5 and vanishes on every even one."""
    for l1 in range(6):
        for l2 in range(6):
            for l in range(abs(l1 - l2), min(l1 + l2, 5) + 1):
                factor = bracket_factor(l1, l2, l)
                assert (abs(factor) > 1e-3) == ((l1 + l2 + l) % 2 == 1), (l1, l2, l, factor)
    # antisymmetry of the bracket: swapping the inputs flips the sign (CG: (-1)^(l1+l2+l))
    assert bracket_factor(1, 2, 2) == pytest.approx(bracket_factor(2, 1, 2))
    # {Y_1, Y_1} -> 1 is the cross product: b = sqrt(3 / (4 pi)) * sqrt(2) for e3nn's CG
    assert abs(bracket_factor(1, 1, 1)) == pytest.approx(0.690988, rel=1e-5)


@pytest.mark.parametrize("lmax", [1, 2, 3, 4])
@pytest.mark.parametrize("paths", ["odd", "all"])
@pytest.mark.parametrize("single", [False, True])
def test_equals_the_clebsch_gordan_product_for_mapped_weights(lmax, paths, single):
    product = GauntBracketProduct(lmax, lmax, lmax, 3, "external", paths=paths)
    cg = ClebschGordanProduct(lmax, lmax, lmax, 3, "external", paths=paths,
                              path_normalization="none").double()  # fmt: skip
    product = product.double()
    x1, x2 = _inputs(lmax, lmax, single=single)
    w = torch.randn(x1.shape[0], *product.weight_shape, dtype=D)
    expected = cg(x1, x2[..., None].expand(-1, -1, 3) if single else x2,
                  product.clebsch_gordan_weights(w))  # fmt: skip
    out = product(x1, x2, w)
    assert (out - expected).abs().max() < 1e-10 * max(1.0, expected.abs().max())
    assert product.paths == coupling_paths(lmax, lmax, lmax, paths)


def test_unequal_degrees_and_no_weights():
    product = GauntBracketProduct(3, 1, 2, weights="none").double()
    cg = ClebschGordanProduct(3, 1, 2, 2, "external", paths="odd", path_normalization="none")
    x1, x2 = _inputs(3, 1, channels=2)
    weights = product.clebsch_gordan_weights()[None, :, None].expand(6, -1, 2)
    assert torch.allclose(product(x1, x2), cg.double()(x1, x2, weights), atol=1e-12)


@pytest.mark.parametrize("paths,parity", [("odd", -1), ("all", None)])
def test_o3_equivariance_with_pseudotensor_parity(paths, parity):
    product = GauntBracketProduct(3, 2, 3, 3, "internal", paths=paths).double()
    torch.nn.init.normal_(product.weight)
    x1, x2 = _inputs(3, 2)
    rotation = o3.random_rotation(dtype=D)
    for R in (rotation, -rotation):  # a rotation, then a reflection
        det = float(torch.linalg.det(R))
        if parity is None and det < 0:
            continue  # even + odd paths together: SO(3) only
        D1, D2 = o3.wigner_D(3, R), o3.wigner_D(2, R)  # natural parity, reflections too
        Dout = o3.wigner_D(3, R, pseudo=parity == -1)  # pseudotensor: times det R
        rotated = product(torch.einsum("ij,bjc->bic", D1, x1),
                          torch.einsum("ij,bjc->bic", D2, x2))  # fmt: skip
        expected = torch.einsum("ij,bjc->bic", Dout, product(x1, x2))
        assert (rotated - expected).abs().max() < 1e-10


def test_the_pseudotensor_output_is_not_a_tensor():
    """The parity test can fail: the odd paths' output is not a natural-parity tensor."""
    product = GauntBracketProduct(1, 1, 1, 1, "none").double()
    x1, x2 = _inputs(1, 1, channels=1)
    D1 = o3.wigner_D(1, -torch.eye(3, dtype=D))  # inversion, natural parity
    out = product(torch.einsum("ij,bjc->bic", D1, x1), torch.einsum("ij,bjc->bic", D1, x2))
    assert (out - torch.einsum("ij,bjc->bic", D1, product(x1, x2))).abs().max() > 1e-3


def test_gradcheck_and_gradgradcheck():
    product = GauntBracketProduct(2, 2, 2, 2, "external", paths="all").double()
    x1, x2 = _inputs(2, 2, batch=3, channels=2)
    w = torch.randn(3, *product.weight_shape, dtype=D)
    args = (x1.requires_grad_(), x2.requires_grad_(), w.requires_grad_())
    assert torch.autograd.gradcheck(product, args)
    assert torch.autograd.gradgradcheck(product, args)


def test_compiles_without_graph_breaks():
    product = GauntBracketProduct(2, 2, 2, 4, "external", paths="all")
    x1, x2 = torch.randn(16, 9, 4), torch.randn(16, 9)
    w = torch.randn(16, *product.weight_shape)
    compiled = torch.compile(product, fullgraph=True, backend="eager")
    assert torch.allclose(compiled(x1, x2, w), product(x1, x2, w), atol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="paths must be 'odd' or 'all'"):
        GauntBracketProduct(1, 1, 1, 2, paths="even")
