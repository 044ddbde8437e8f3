"""GauntGridProduct: grid resolution, exactness, equator rings, the chunked fast path."""

import pytest
import torch

from geobasis.products import GauntGridProduct


def _inputs(lmax, channels, batch, shared_x2, dtype=torch.float64):
    l1, l2, lo = lmax
    x1 = torch.randn(batch, (l1 + 1) ** 2, channels, dtype=dtype)
    x2 = torch.randn(batch, (l2 + 1) ** 2, *([] if shared_x2 else [channels]), dtype=dtype)
    w = torch.randn(batch, l1 + l2 + lo + 3, channels, dtype=dtype)
    return x1, x2, w


def test_internal_weights_start_at_one_and_train():
    product = GauntGridProduct(2, 2, 2, 4).double()
    plain = GauntGridProduct(2, 2, 2, weights="none").double()
    x1, x2, _ = _inputs((2, 2, 2), 4, 3, True)
    assert torch.allclose(product(x1, x2), plain(x1, x2))
    product(x1, x2).square().sum().backward()
    assert product.weight.grad.shape == product.weight_shape == (9, 4)


def test_grid_resolution_and_exactness():
    product = GauntGridProduct(2, 3, 4, 1)
    assert (product.res_beta, product.res_alpha) == (5, 10) and product.is_exact  # equator ring
    coarse = GauntGridProduct(2, 3, 4, 1, "none", res_beta=3, res_alpha=6).double()
    assert not coarse.is_exact
    x1, x2, _ = _inputs((2, 3, 4), 1, 3, True)
    exact = GauntGridProduct(2, 3, 4, weights="none").double()(x1, x2)
    assert (coarse(x1, x2) - exact).abs().max() > 1e-6  # aliasing is visible


@pytest.mark.parametrize("res_beta", [4, 5, 6, 7])
def test_even_and_odd_ring_counts_give_the_same_product(res_beta):
    # degree 6 needs 4 rings; odd counts put a ring on the equator, which the mirrored
    # transforms treat separately (it carries only even l + m components)
    reference = GauntGridProduct(2, 2, 2, 3, "external", res_beta=8).double()
    product = GauntGridProduct(2, 2, 2, 3, "external", res_beta=res_beta).double()
    assert product.is_exact and product.num_pairs == (res_beta // 2) * product.res_alpha
    x1, x2, w = _inputs((2, 2, 2), 3, 40, True)
    product.chunk_size = 16
    leaves = [t.clone().requires_grad_() for t in (x1, x2, w)]
    out = product(*leaves)  # the hand-written chunked path
    assert torch.allclose(out, reference(x1, x2, w), atol=1e-12)
    assert torch.allclose(product.plain(x1, x2, w), out, atol=1e-12)
    x2c = torch.randn(40, 9, 3, dtype=torch.float64)
    assert torch.allclose(product(x1, x2c, w), reference(x1, x2c, w), atol=1e-12)
    grads = torch.autograd.grad(out.square().sum(), leaves)
    expected = torch.autograd.grad(reference.plain(*leaves).square().sum(), leaves)
    for g, e in zip(grads, expected, strict=True):
        assert torch.allclose(g, e, atol=1e-10)


def test_clebsch_gordan_weights_layout():
    product = GauntGridProduct(2, 1, 2, 3)
    assert product.clebsch_gordan_weights().shape == (len(product.paths), 3)
    assert all((a + b + c) % 2 == 0 for a, b, c in product.paths)
    unweighted = GauntGridProduct(2, 1, 2, weights="none")
    assert unweighted.clebsch_gordan_weights().shape == (len(product.paths),)


@pytest.mark.parametrize("mode", ["external", "internal"])
def test_grid_fast_path_matches_plain_autograd(mode):
    """The hand-written backward (single-channel x2, degree weights) == plain autograd."""
    product = GauntGridProduct(3, 2, 4, 3, mode).double()
    product.chunk_size = 3
    x1, x2, w = _inputs((3, 2, 4), 3, 8, True)
    x1.requires_grad_()
    x2.requires_grad_()
    weight = (w if mode == "external" else product.weight).requires_grad_()
    args = (x1, x2, w) if mode == "external" else (x1, x2)
    cotangent = torch.randn(8, 25, 3, dtype=torch.float64)
    reference = product._plain_product(x1, x2, w if mode == "external" else product.weight[None])
    expected = torch.autograd.grad((reference * cotangent).sum(), (x1, x2, weight))
    for saved in (1 << 29, 0):
        product.max_saved_bytes = saved
        out = product(*args)
        assert torch.allclose(out, reference, atol=1e-12)
        got = torch.autograd.grad((out * cotangent).sum(), (x1, x2, weight))
        for a, b in zip(got, expected, strict=True):
            assert torch.allclose(a, b, atol=1e-12)
