"""The chunked autograd mechanisms: exact values, gradients and second derivatives."""

import pytest
import torch

from geobasis._chunked import chunked_aggregate, chunked_rows


def _graph(nodes=7, edges=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, nodes, (2, edges), generator=g)
    x = torch.randn(nodes, 3, dtype=torch.float64, generator=g, requires_grad=True)
    e = torch.randn(edges, 2, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(3, 2, dtype=torch.float64, generator=g, requires_grad=True)
    return index, x, e, w


def _message(x_j, e, w):
    return torch.tanh(x_j @ w) * e.sin()


def test_chunked_aggregate_equals_the_plain_scatter_with_its_gradients():
    index, x, e, w = _graph()
    plain = torch.zeros(7, 2, dtype=torch.float64).index_add(
        0, index[1], _message(x[index[0]], e, w)
    )
    out = chunked_aggregate(_message, x, index, (e,), (w,), chunk_size=6)
    assert torch.allclose(out, plain, atol=1e-14)
    grads = torch.autograd.grad(out.square().sum(), (x, e, w))
    expected = torch.autograd.grad(plain.square().sum(), (x, e, w))
    for a, b in zip(grads, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_chunked_aggregate_gradcheck_and_gradgradcheck():
    index, x, e, w = _graph(nodes=5, edges=17, seed=1)

    def f(x, e, w):
        return chunked_aggregate(_message, x, index, (e,), (w,), chunk_size=4)

    assert torch.autograd.gradcheck(f, (x, e, w))
    assert torch.autograd.gradgradcheck(f, (x, e, w))


def test_no_edges_give_zeros_and_zero_gradients():
    _, x, _, w = _graph()
    index = torch.zeros(2, 0, dtype=torch.long)
    e = torch.zeros(0, 2, dtype=torch.float64, requires_grad=True)
    out = chunked_aggregate(_message, x, index, (e,), (w,))
    assert out.shape == (7, 2) and not out.any()
    (gx,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
    assert gx is None or not gx.any()


def test_chunked_rows_matches_the_function():
    a = torch.randn(30, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    out = chunked_rows(lambda a, w: (a @ w).exp(), (a,), (w,), chunk_size=7)
    assert torch.allclose(out, (a @ w).exp())
    assert torch.autograd.gradgradcheck(
        lambda a, w: chunked_rows(lambda a, w: (a @ w).sin(), (a,), (w,), chunk_size=7), (a, w)
    )


def test_block_rows_is_cache_sized_on_cpu_and_whole_or_memory_bound_elsewhere():
    from geobasis._chunked import EXPANSION, MEMORY_FRACTION, block_rows

    assert block_rows(1_000_000, 4096, "cpu", 256) == 256
    # a GPU with room for everything: one block, no Python loop over chunks
    assert block_rows(1_000_000, 4096, "cuda", 256, memory_bytes=1 << 40) == 1_000_000
    # not enough room: as many rows as the budget holds, by bytes
    free = 1 << 30
    expected = int(MEMORY_FRACTION * free) // (EXPANSION * 4096)
    assert block_rows(1_000_000, 4096, "cuda", 256, memory_bytes=free) == expected
    assert block_rows(10, 1 << 40, "cuda", 256, memory_bytes=free) == 1
    assert block_rows(0, 4096, "cuda", 256, memory_bytes=free) == 1


def test_products_take_one_block_per_call_on_an_accelerator(monkeypatch):
    """The CPU's cache-sized blocks are not used on a GPU: the products' block size comes
    from ``block_rows`` there (checked on the 'meta' device, a stand-in accelerator)."""
    import geobasis._chunked as chunked
    from geobasis.products import ClebschGordanProduct, GauntGridProduct

    monkeypatch.setattr(chunked, "_device_bytes", lambda device: 1 << 40)
    x1 = torch.empty(100_000, 16, 32, device="meta")
    for product in (ClebschGordanProduct(3, 3, 3, 32), GauntGridProduct(3, 3, 3, 32)):
        assert product.batch_chunk(torch.empty(100_000, 16, 32)) <= 512
        assert product.batch_chunk(x1) == 100_000
        product.chunk_size = 64  # an explicit choice is kept everywhere
        assert product.batch_chunk(x1) == 64


@pytest.mark.parametrize("name", ["cg", "gaunt_grid", "gaunt_fourier", "so2"])
def test_forward_and_backward_split_alike_when_the_block_size_changes(name, monkeypatch):
    """A block size that differs from one call to the next (on a GPU it once followed the
    free memory, which the forward itself lowers) must not break a product: backward
    reuses the forward's blocks.  Regression: 1M edges on an H200 failed in CG and the
    Gaunt grid with mismatched block sizes."""
    from geobasis.products import make

    torch.manual_seed(0)
    product = make(name, 2, 2, 2, 4).double()
    x1 = torch.randn(50, 9, 4, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(50, 9, dtype=torch.float64)
    w = torch.randn(50, *product.weight_shape, dtype=torch.float64, requires_grad=True)
    want = product.plain(x1, x2, w)
    want_grads = torch.autograd.grad(want.square().sum(), (x1, w))
    sizes = iter([7, 13, 5, 11, 3, 17] * 10)
    monkeypatch.setattr(product, "batch_chunk", lambda x: next(sizes))
    got = product(x1, x2, w)
    got_grads = torch.autograd.grad(got.square().sum(), (x1, w))
    assert torch.allclose(got, want, atol=1e-12)
    for g, h in zip(got_grads, want_grads):
        assert torch.allclose(g, h, atol=1e-10)
