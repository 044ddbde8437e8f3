"""SO2Product: exactly the CG product with edge harmonics for mapped weights, equivariant,
differentiable twice."""

import pytest
import torch

from geobasis import o3
from geobasis.products import ClebschGordanProduct, SO2Product, make

D = torch.float64


def _inputs(lmax1, lmax2, edges=40, channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(edges, (lmax1 + 1) ** 2, channels, generator=g, dtype=D)
    vectors = torch.randn(edges, 3, generator=g, dtype=D)
    return x1, vectors, o3.spherical_harmonics(lmax2, vectors, normalization="component")


@pytest.mark.parametrize("lmax", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("paths", ["even", "odd", "all"])
def test_equals_the_clebsch_gordan_product_for_mapped_weights(lmax, paths):
    cg = ClebschGordanProduct(lmax, lmax, lmax, 3, "external", paths=paths).double()
    so2 = SO2Product(lmax, lmax, lmax, 3, "external", paths=paths).double()
    x1, _, sh = _inputs(lmax, lmax)
    w = torch.randn(x1.shape[0], len(cg.paths), 3, dtype=D)
    expected = cg(x1, sh, w)
    out = so2(x1, sh, so2.weights_from_cg(w, cg.paths, cg.path_norms()))
    assert (out - expected).abs().max() <= 1e-10 * expected.abs().max()


def test_spans_the_cg_product_with_higher_degree_harmonics():
    """SO(2) weights at lmax2 = 1 reproduce the CG product with harmonics up to 4."""
    cg = ClebschGordanProduct(2, 4, 2, 3, "external", paths="even").double()
    so2 = SO2Product(2, 1, 2, 3, "external").double()
    x1, vectors, sh4 = _inputs(2, 4)
    sh1 = sh4[:, :4]
    w = torch.randn(x1.shape[0], len(cg.paths), 3, dtype=D)
    out = so2(x1, sh1, so2.weights_from_cg(w, cg.paths, cg.path_norms()))
    assert torch.allclose(out, cg(x1, sh4, w), atol=1e-10)


@pytest.mark.parametrize("paths,parity", [("even", 1), ("odd", -1)])
def test_o3_equivariant_with_natural_or_pseudotensor_parity(paths, parity):
    so2 = SO2Product(3, 2, 3, 3, "internal", paths=paths).double()
    x1, vectors, _ = _inputs(3, 2)
    rotation = o3.random_rotation(dtype=D)
    for R in (rotation, -rotation):  # a rotation and a reflection
        det = float(torch.linalg.det(R))
        D1 = o3.wigner_D(3, R)

        def run(x, v):
            return so2(x, o3.spherical_harmonics(2, v, normalization="component"))

        rotated = run(torch.einsum("ij,ejc->eic", D1, x1), vectors @ R.T)
        sign = det if parity == -1 else 1.0
        expected = sign * torch.einsum("ij,ejc->eic", D1, run(x1, vectors))
        assert (rotated - expected).abs().max() < 1e-10


def test_gradcheck_and_gradgradcheck():
    so2 = SO2Product(2, 2, 2, 2, "external", paths="all").double()
    x1, vectors, _ = _inputs(2, 2, edges=4, channels=2)
    w = torch.randn(4, *so2.weight_shape, dtype=D)

    def f(x, v, weight):
        return so2(x, o3.spherical_harmonics(2, v, normalization="component"), weight)

    args = (x1.requires_grad_(), vectors.requires_grad_(), w.requires_grad_())
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


def test_registry_conv_and_errors():
    product = make("so2", 2, 2, 2, 4)
    assert isinstance(product, SO2Product) and product.path_set == "even"
    with pytest.raises(ValueError, match="lmax2 must be at least 1"):
        SO2Product(2, 0, 2, 4)
    with pytest.raises(ValueError, match="needs weights"):
        SO2Product(2, 2, 2, 4, "none")
    so2 = SO2Product(1, 1, 1, 2, "external").double()
    x1, _, sh = _inputs(1, 1, channels=2)
    with pytest.raises(ValueError, match="edge harmonics"):
        so2(
            x1,
            sh[..., None].expand(-1, -1, 2).contiguous(),
            torch.ones(40, *so2.weight_shape, dtype=D),
        )
    odd = ClebschGordanProduct(1, 1, 1, 2, "external", paths="odd")
    with pytest.raises(ValueError, match="needs paths='all' or 'odd'"):
        so2.cg_map(odd.paths)


def test_blocks_of_edges_give_the_same_values_and_gradients():
    so2 = SO2Product(3, 3, 3, 4, "external").double()
    x1, vectors, sh = _inputs(3, 3, edges=10, channels=4)
    w = torch.randn(10, *so2.weight_shape, dtype=D)

    def run(chunk):
        so2.chunk_size = chunk
        x, weight = x1.clone().requires_grad_(), w.clone().requires_grad_()
        out = so2(x, sh, weight)
        (out * torch.arange(out.numel(), dtype=D).reshape(out.shape)).sum().backward()
        return out, x.grad, weight.grad

    for whole, blocked in zip(run(None), run(3), strict=True):
        assert torch.allclose(whole, blocked, atol=1e-12)
    assert so2.batch_chunk(x1) == 3
    so2.chunk_size = None
    assert so2.batch_chunk(x1) == 1024  # small edges: blocks of about 8 MiB, at most 1024
    assert SO2Product(8, 8, 8, 64).batch_chunk(torch.empty(1000, 81, 64)) == 64


@pytest.mark.parametrize(
    "lmax1,lmax_out,paths", [(3, 2, "all"), (2, 4, "odd"), (4, 4, "even"), (6, 5, "all")]
)
@pytest.mark.parametrize("mode", ["external", "internal"])
@pytest.mark.parametrize("kernel", ["native", "pytorch"])
def test_hand_written_backward_equals_autograd_of_the_plain_form(monkeypatch, lmax1, lmax_out,
                                                                 paths, mode, kernel):  # fmt: skip
    """The hand-written forward/backward (``forward``: the C product, or the blocked
    PyTorch kernel) against autograd of ``plain``, for different input and output degrees,
    shared weights and gradients of the direction."""
    if kernel == "pytorch":
        from geobasis.products import so2 as so2_module

        monkeypatch.setattr(so2_module, "usable", lambda x: False)
    so2 = SO2Product(lmax1, 2, lmax_out, 3, mode, paths=paths).double()
    so2.chunk_size = 7
    x1, vectors, _ = _inputs(lmax1, 2, edges=20)
    w = torch.randn(20, *so2.weight_shape, dtype=D) if mode == "external" else None
    results = []
    for call in (so2, so2.plain):
        leaves = [t.clone().requires_grad_() for t in (x1, vectors)]
        weight = w.clone().requires_grad_() if w is not None else None
        sh = o3.spherical_harmonics(2, leaves[1], normalization="component")
        out = call(leaves[0], sh, weight)
        probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=D)
        (out * probe).sum().backward()
        grads = [leaf.grad for leaf in leaves]
        grads.append(weight.grad if weight is not None else so2.weight.grad.clone())
        so2.zero_grad()
        results.append([out, *grads])
    for blocked, plain in zip(*results, strict=True):
        assert (blocked - plain).abs().max() < 1e-10 * (1 + plain.abs().max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "lmax1,lmax_out,paths,mode",
    [(3, 2, "all", "external"), (2, 4, "odd", "internal"), (6, 5, "even", "external"),
     (4, 4, "all", "internal"), (1, 1, "all", "external")],
)  # fmt: skip
def test_native_product_equals_the_pytorch_kernel(monkeypatch, dtype, lmax1, lmax_out, paths,
                                                  mode):  # fmt: skip
    """The C product (``_so2_product.c``) against the blocked PyTorch kernel: values and
    the gradients of x1, the direction and the weights (shared ones summed over edges),
    with the edges split between three threads."""
    from geobasis.products import _so2_native
    from geobasis.products import so2 as so2_module

    if not _so2_native.usable(torch.empty(0)):
        pytest.skip("no C compiler: the C product is not built (the PyTorch kernel runs)")
    so2 = SO2Product(lmax1, 2, lmax_out, 5, mode, paths=paths).to(dtype)
    so2.chunk_size = 13
    x1, vectors, _ = _inputs(lmax1, 2, edges=40, channels=5)
    w = torch.randn(40, *so2.weight_shape, dtype=D) if mode == "external" else None
    results = {}
    monkeypatch.setattr(_so2_native, "_EDGES_PER_THREAD", 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for form in ("native", "pytorch"):
            if form == "pytorch":
                monkeypatch.setattr(so2_module, "usable", lambda x: False)
            leaves = [t.to(dtype, copy=True).requires_grad_() for t in (x1, vectors)]
            weight = w.to(dtype, copy=True).requires_grad_() if w is not None else None
            sh = o3.spherical_harmonics(2, leaves[1], normalization="component")
            out = so2(leaves[0], sh, weight)
            probe = torch.linspace(-1, 1, out.numel(), dtype=dtype).reshape(out.shape)
            (out * probe).sum().backward()
            grads = [leaf.grad for leaf in leaves]
            grads.append(weight.grad if weight is not None else so2.weight.grad.clone())
            so2.zero_grad()
            results[form] = [out, *grads]
    finally:
        torch.set_num_threads(threads)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    for fused, plain in zip(results["native"], results["pytorch"], strict=True):
        assert (fused - plain).abs().max() <= tolerance * (1 + plain.abs().max())


def test_mixed_dtypes_are_refused_not_read_as_raw_memory():
    so2 = SO2Product(2, 2, 2, 3, "external")  # float32 tables
    x1, _, sh = _inputs(2, 2, edges=5, channels=3)  # float64
    with pytest.raises((RuntimeError, TypeError)):
        so2(x1, sh, torch.randn(5, *so2.weight_shape, dtype=D))
    with pytest.raises((RuntimeError, TypeError)):
        so2(x1.float(), sh.float(), torch.randn(5, *so2.weight_shape, dtype=D))
