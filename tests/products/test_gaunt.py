"""Gaunt products (grid and Fourier, shared base): grid == Fourier == Gaunt-weighted CG ==
pointwise product; symmetry, equivariance, gradients, errors."""

import pytest
import torch

from geobasis.o3 import from_grid, to_grid
from geobasis.products import (
    ClebschGordanProduct,
    GauntFourierProduct,
    GauntGridProduct,
)
from geobasis.testing import assert_equivariant

PRODUCTS = [GauntGridProduct, GauntFourierProduct]
BAND_LIMITS = [(1, 1, 2), (3, 2, 4), (2, 4, 1), (4, 4, 4), (0, 3, 3), (5, 1, 2)]


def _inputs(lmax, channels, batch, shared_x2, dtype=torch.float64):
    l1, l2, lo = lmax
    x1 = torch.randn(batch, (l1 + 1) ** 2, channels, dtype=dtype)
    x2 = torch.randn(batch, (l2 + 1) ** 2, *([] if shared_x2 else [channels]), dtype=dtype)
    w = torch.randn(batch, l1 + l2 + lo + 3, channels, dtype=dtype)
    return x1, x2, w


@pytest.mark.parametrize("lmax", BAND_LIMITS)
@pytest.mark.parametrize("shared_x2", [True, False])
def test_grid_fourier_and_clebsch_gordan_agree_float64(lmax, shared_x2):
    x1, x2, w = _inputs(lmax, 3, 7, shared_x2)
    cg = ClebschGordanProduct(*lmax, 3, "external", paths="even", path_normalization="none")
    results = []
    for cls in PRODUCTS:
        product = cls(*lmax, 3, "external").double()
        results.append(product(x1, x2, w))
        expected = cg.double()(x1, x2, product.clebsch_gordan_weights(w))
        assert (results[-1] - expected).abs().max() <= 1e-10 * expected.abs().max()
    assert (results[0] - results[1]).abs().max() <= 1e-10 * results[0].abs().max()


@pytest.mark.parametrize("cls", PRODUCTS)
def test_float32_matches_float64(cls):
    lmax = (4, 4, 4)
    x1, x2, w = _inputs(lmax, 8, 300, True)
    reference = cls(*lmax, 8, "external").double()(x1, x2, w)
    got = cls(*lmax, 8, "external")(x1.float(), x2.float(), w.float())
    assert (got.double() - reference).abs().max() <= 1e-5 * reference.abs().max()


@pytest.mark.parametrize("cls", PRODUCTS)
@pytest.mark.parametrize("lmax", [(2, 3, 4), (3, 3, 2)])
def test_unweighted_product_is_the_pointwise_product(cls, lmax):
    l1, l2, lo = lmax
    x1, x2, _ = _inputs(lmax, 2, 4, False)
    res_beta, res_alpha = 12, 24  # any grid exact for degree l1 + l2 + lo
    expected = from_grid(
        to_grid(x1, res_beta=res_beta, res_alpha=res_alpha)
        * to_grid(x2, res_beta=res_beta, res_alpha=res_alpha),
        lo,
        res_beta,
        res_alpha,
    )
    got = cls(l1, l2, lo, weights="none").double()(x1, x2)
    assert torch.allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("cls", PRODUCTS)
def test_symmetric_in_its_inputs(cls):
    x1, x2, _ = _inputs((3, 3, 3), 2, 5, False)
    product = cls(3, 3, 3, weights="none").double()
    assert torch.allclose(product(x1, x2), product(x2, x1), atol=1e-12)


@pytest.mark.parametrize("cls", PRODUCTS)
def test_equivariance(cls):
    lmax = (3, 2, 3)
    product = cls(*lmax, 4, "external").double()
    x1, x2, w = _inputs(lmax, 4, 6, False)
    assert_equivariant(
        lambda pos, x1, x2, weight: product(x1, x2, weight),
        {"pos": torch.randn(6, 3), "x1": x1, "x2": x2, "weight": w},
        outputs={"output": 3},
        inputs={"x1": 3, "x2": 2},
        transformations=("rotation", "reflection"),
        atol=1e-12,
        rtol=1e-12,
    )


@pytest.mark.parametrize("cls", PRODUCTS)
@pytest.mark.parametrize("mode", ["external", "internal"])
def test_gradcheck_and_gradgradcheck(cls, mode):
    product = cls(2, 2, 2, 3, mode).double()
    product.chunk_size = 2
    x1, x2, w = _inputs((2, 2, 2), 3, 5, True)
    args = [x1.requires_grad_(), x2.requires_grad_()]
    if mode == "external":
        args.append(w.requires_grad_())
    assert torch.autograd.gradcheck(product, args)
    assert torch.autograd.gradgradcheck(product, args)


@pytest.mark.parametrize("cls", PRODUCTS)
def test_errors_are_clear(cls):
    product = cls(2, 2, 2, 3, "external")
    x1, x2 = torch.randn(4, 9, 3), torch.randn(4, 9)
    with pytest.raises(ValueError, match="weight must have shape"):
        product(x1, x2, torch.randn(4, 8, 3))
    with pytest.raises(ValueError, match="x1 must have shape"):
        product(torch.randn(4, 4, 3), x2, torch.randn(4, 9, 3))
    with pytest.raises(TypeError, match="module's tables"):
        product(x1.double(), x2.double(), torch.randn(4, 9, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="lmax1 must be"):
        cls(-1, 2, 2, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("cls", PRODUCTS)
def test_cuda_matches_cpu(cls):
    x1, x2, w = _inputs((4, 4, 4), 8, 300, True, torch.float32)
    product = cls(4, 4, 4, 8, "external")
    expected = product(x1, x2, w)
    got = product.cuda()(x1.cuda(), x2.cuda(), w.cuda()).cpu()
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("product_class", PRODUCTS)
def test_plain_form_equals_forward(product_class):
    product = product_class(2, 2, 2, 3, weights="external").double()
    x1, x2, w = _inputs((2, 2, 2), 3, 4, True)
    assert torch.allclose(product(x1, x2, w), product.plain(x1, x2, w), atol=1e-12)
