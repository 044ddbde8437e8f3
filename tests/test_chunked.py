"""The chunked autograd mechanisms: exact values, gradients and second derivatives."""

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
