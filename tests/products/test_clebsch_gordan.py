"""ClebschGordanProduct: agreement with e3nn, equivariance, gradients."""

import pytest
import torch

from geobasis.o3 import gaunt_factor
from geobasis.products import ClebschGordanProduct, coupling_paths, e3nn_equivalent
from geobasis.testing import assert_equivariant


@pytest.fixture
def float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn builds its Wigner 3j in the default dtype
    yield
    torch.set_default_dtype(old)


def _inputs(product, batch, shared_x2, dtype, channels=None):
    c = channels or product.channels
    x1 = torch.randn(batch, product.dim1, c, dtype=dtype)
    shape = (batch, product.dim2) if shared_x2 else (batch, product.dim2, c)
    x2 = torch.randn(*shape, dtype=dtype)
    w = torch.randn(batch, len(product.paths), c, dtype=dtype)
    return x1, x2, w


def _e3nn_reference(product, x1, x2, w, shared_x2):
    tp, in1, in2, out = e3nn_equivalent(product, shared_x2=shared_x2)
    tp = tp.to(x1.dtype)
    return out(tp(in1(x1), in2(x2), w.reshape(w.shape[0], -1)))


@pytest.mark.parametrize(
    ("lmax", "paths", "shared_x2"),
    [
        ((1, 1, 2), "all", True),
        ((2, 2, 2), "all", True),
        ((3, 2, 3), "even", True),
        ((2, 3, 1), "odd", True),
        ((2, 2, 3), "all", False),
        ((4, 4, 4), "all", True),
    ],
)
def test_matches_e3nn_float64(float64_default, lmax, paths, shared_x2):
    product = ClebschGordanProduct(*lmax, 4, "external", paths=paths)
    x1, x2, w = _inputs(product, 11, shared_x2, torch.float64)
    for t in (x1, x2, w):
        t.requires_grad_(True)
    ours = product(x1, x2, w)
    ref = _e3nn_reference(product, x1, x2, w, shared_x2)
    assert (ours - ref).abs().max() <= 1e-10 * max(1.0, ref.abs().max())
    g = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * g).sum(), (x1, x2, w))
    ref_grads = torch.autograd.grad((ref * g).sum(), (x1, x2, w))
    for a, b in zip(grads, ref_grads, strict=True):
        assert (a - b).abs().max() <= 1e-10 * max(1.0, b.abs().max())


@pytest.mark.parametrize(("lmax", "shared_x2"), [(3, True), (3, False), (4, True)])
def test_matches_e3nn_float32(lmax, shared_x2):
    product = ClebschGordanProduct(lmax, lmax, lmax, 8, "external")
    x1, x2, w = _inputs(product, 600, shared_x2, torch.float32)  # > one chunk
    ours = product(x1, x2, w)
    ref = _e3nn_reference(product, x1, x2, w, shared_x2)
    assert (ours - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_internal_and_unweighted_modes_match_external():
    external = ClebschGordanProduct(2, 2, 2, 3, "external", paths="even").double()
    internal = ClebschGordanProduct(2, 2, 2, 3, "internal", paths="even").double()
    none = ClebschGordanProduct(2, 2, 2, 3, "none", paths="even").double()
    x1, x2, _ = _inputs(external, 5, True, torch.float64)
    assert internal.weight.shape == internal.weight_shape == (len(internal.paths), 3)
    expected = external(x1, x2, internal.weight.detach().expand(5, -1, -1))
    assert torch.allclose(internal(x1, x2), expected, atol=1e-12)
    ones = torch.ones(5, *external.weight_shape, dtype=torch.float64)
    assert torch.allclose(none(x1, x2), external(x1, x2, ones), atol=1e-12)
    assert none.weight_numel == 0 and external.weight_numel == len(external.paths) * 3


def test_paths_cover_the_triangle_and_split_by_parity():
    every = coupling_paths(3, 2, 4, "all")
    assert set(every) == {
        (l1, l2, l)
        for l1 in range(4)
        for l2 in range(3)
        for l in range(abs(l1 - l2), min(l1 + l2, 4) + 1)
    }
    even, odd = coupling_paths(3, 2, 4, "even"), coupling_paths(3, 2, 4, "odd")
    assert sorted(even + odd) == sorted(every)
    assert all((a + b + c) % 2 == 0 for a, b, c in even) and (1, 1, 1) in odd
    # grouped by output degree: contiguous blocks
    outs = [p[2] for p in every]
    assert outs == sorted(outs)


def test_odd_path_is_the_cross_product():
    """1 x 1 -> 1 (odd) is proportional to the cross product of two vectors."""
    product = ClebschGordanProduct(1, 1, 1, 1, "none", paths="odd").double()
    a, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    # e3nn's l=1 components are (y, z, x)
    perm = [1, 2, 0]
    x1 = torch.zeros(4, 4, 1, dtype=torch.float64)
    x2 = torch.zeros(4, 4, dtype=torch.float64)
    x1[:, 1:, 0], x2[:, 1:] = a[:, perm], b[:, perm]
    out = product(x1, x2)[:, 1:, 0]
    cross = torch.linalg.cross(a, b)[:, perm]
    ratio = out / cross
    assert torch.allclose(ratio, ratio[0, 0].expand_as(ratio), atol=1e-12)
    assert abs(ratio[0, 0].abs().item() - 1 / 2**0.5) < 1e-12


@pytest.mark.parametrize(
    ("paths", "kind", "transformations"),
    [
        ("even", lambda l: l, ("rotation", "reflection")),
        ("odd", lambda l: f"pseudo:{l}", ("rotation", "reflection")),
        ("all", lambda l: l, ("rotation",)),
    ],
)
def test_equivariance(paths, kind, transformations):
    product = ClebschGordanProduct(3, 2, 3, 4, "external", paths=paths).double()
    x1, x2, w = _inputs(product, 6, False, torch.float64)
    assert_equivariant(
        lambda pos, x1, x2, weight: product(x1, x2, weight),
        {"pos": torch.randn(6, 3), "x1": x1, "x2": x2, "weight": w},
        outputs={"output": kind(3)},
        inputs={"x1": 3, "x2": 2},
        transformations=transformations,
        atol=1e-12,
        rtol=1e-12,
    )
    # single-channel x2 (edge harmonics) through a wrapper
    shared = ClebschGordanProduct(2, 3, 2, 4, "internal", paths=paths).double()
    x1, x2, _ = _inputs(shared, 6, False, torch.float64, channels=1)
    assert_equivariant(
        lambda pos, x1, x2: shared(x1.expand(-1, -1, 4), x2[..., 0]),
        {"pos": torch.randn(6, 3), "x1": x1, "x2": x2},
        outputs={"output": kind(2)},
        inputs={"x1": 2, "x2": 3},
        transformations=transformations,
        atol=1e-12,
        rtol=1e-12,
    )


def test_reflection_breaks_the_mixed_parity_output():
    """Documented: paths="all" sums tensors of both parities, so it is SO(3) only."""
    from geobasis.testing import check_equivariance

    product = ClebschGordanProduct(1, 1, 1, 2, "external", paths="all").double()
    x1, x2, w = _inputs(product, 4, False, torch.float64)
    report = check_equivariance(
        lambda pos, x1, x2, weight: product(x1, x2, weight),
        {"pos": torch.randn(4, 3), "x1": x1, "x2": x2, "weight": w},
        outputs={"output": 1},
        inputs={"x1": 1, "x2": 1},
        transformations=("reflection",),
    )
    assert not report.ok


@pytest.mark.parametrize("mode", ["external", "internal", "none"])
@pytest.mark.parametrize("shared_x2", [True, False])
def test_gradcheck_and_gradgradcheck(mode, shared_x2):
    product = ClebschGordanProduct(2, 2, 2, 3, mode).double()
    product.chunk_size = 2  # several chunks
    x1, x2, w = _inputs(product, 5, shared_x2, torch.float64)
    args = [x1.requires_grad_(), x2.requires_grad_()]
    if mode == "external":
        args.append(w.requires_grad_())
    assert torch.autograd.gradcheck(product, args)
    assert torch.autograd.gradgradcheck(product, args)
    if mode == "internal":
        product(x1, x2).square().sum().backward()
        assert product.weight.grad is not None and product.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["external", "internal", "none"])
def test_saved_and_recomputed_rows_give_the_plain_gradients(mode):
    product = ClebschGordanProduct(3, 3, 3, 4, mode, paths="all").double()
    x1, x2, w = (t.requires_grad_() for t in _inputs(product, 9, True, torch.float64))
    w = w if mode == "external" else None
    inputs = [t for t in (x1, x2, w, product.weight) if t is not None]
    product.chunk_size = 4
    expected = torch.autograd.grad(product.plain(x1, x2, w).square().sum(), inputs)
    for saved in (1 << 29, 0):  # rows kept from the forward / recomputed in backward
        product.max_saved_bytes = saved
        grads = torch.autograd.grad(product(x1, x2, w).square().sum(), inputs)
        for a, b in zip(grads, expected, strict=True):
            assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("grad", [False, True])
def test_output_degrees_no_path_reaches_are_exactly_zero(grad):
    # l = 3 needs l1 + l2 >= 3: unreachable from lmax1 = lmax2 = 1; the chunked forward
    # must not leave uninitialised memory there
    product = ClebschGordanProduct(1, 1, 3, 4, "external", paths="even").double()
    x1, x2, w = (t.requires_grad_(grad) for t in _inputs(product, 600, True, torch.float64))
    product.chunk_size = 128
    with torch.set_grad_enabled(grad):
        out = product(x1, x2, w)
    assert torch.equal(out[:, 9:], torch.zeros_like(out[:, 9:]))
    assert torch.allclose(out, product.plain(x1, x2, w), atol=1e-12)
    assert out[:, :9].abs().sum() > 0


def test_gaunt_weights_give_the_pointwise_product():
    from geobasis.o3 import from_grid, to_grid

    product = ClebschGordanProduct(2, 3, 3, 2, "external", paths="all", path_normalization="none")
    product = product.double()
    x1 = torch.randn(3, 9, 2, dtype=torch.float64)
    x2 = torch.randn(3, 16, 2, dtype=torch.float64)
    w = product.gaunt_weights()[None, :, None].expand(3, -1, 2)
    expected = from_grid(
        to_grid(x1, res_beta=10, res_alpha=20) * to_grid(x2, res_beta=10, res_alpha=20), 3, 10, 20
    )
    assert torch.allclose(product(x1, x2, w), expected, atol=1e-12)
    assert gaunt_factor(1, 1, 1) == 0.0


def test_broadcasting_and_empty_batches():
    product = ClebschGordanProduct(1, 1, 1, 2, "external").double()
    x1 = torch.randn(2, 3, 4, 2, dtype=torch.float64)
    x2 = torch.randn(1, 3, 4, dtype=torch.float64)  # same rank as x1 minus the channels
    w = torch.randn(len(product.paths), 2, dtype=torch.float64)
    out = product(x1, x2, w)
    assert out.shape == (2, 3, 4, 2)
    expected = product(x1[1, 2], x2[0, 2], w)
    assert torch.allclose(out[1, 2], expected)
    empty = product(x1[:0, 0], x2[0, :0], w)
    assert empty.shape == (0, 4, 2)


def test_errors_are_clear():
    product = ClebschGordanProduct(2, 1, 2, 3, "external")
    x1, x2, w = torch.randn(4, 9, 3), torch.randn(4, 4), torch.randn(4, len(product.paths), 3)
    with pytest.raises(ValueError, match="x1 must have shape"):
        product(torch.randn(4, 8, 3), x2, w)
    with pytest.raises(ValueError, match="channels=3"):
        product(torch.randn(4, 9, 5), x2, w)
    with pytest.raises(ValueError, match="x2 must have shape"):
        product(x1, torch.randn(4, 9), w)
    with pytest.raises(ValueError, match="channels of x1"):
        product(x1, torch.randn(4, 4, 2), w)
    with pytest.raises(TypeError, match="same floating dtype"):
        product(x1, x2.double(), w)
    with pytest.raises(TypeError, match="module's tables"):
        product(x1.double(), x2.double(), w.double())
    with pytest.raises(ValueError, match="pass weight"):
        product(x1, x2)
    with pytest.raises(ValueError, match="weight must have shape"):
        product(x1, x2, w[:, 1:])
    with pytest.raises(ValueError, match="do not broadcast"):
        product(x1, x2[:3], w)
    with pytest.raises(ValueError, match="weights='external'"):
        ClebschGordanProduct(1, 1, 1, 3, "internal")(torch.randn(2, 4, 3), torch.randn(2, 4), w)
    with pytest.raises(ValueError, match="needs the number of channels"):
        ClebschGordanProduct(1, 1, 1)
    with pytest.raises(ValueError, match="weights must be one of"):
        ClebschGordanProduct(1, 1, 1, 2, "shared")
    with pytest.raises(ValueError, match="paths must be one of"):
        ClebschGordanProduct(1, 1, 1, 2, paths="parity")
    with pytest.raises(ValueError, match="no 'odd' coupling paths"):
        ClebschGordanProduct(0, 0, 0, 2, paths="odd")
    with pytest.raises(ValueError, match="lmax_out must be"):
        ClebschGordanProduct(1, 1, -1, 2)
    with pytest.raises(ValueError, match="is on meta"):
        product(x1, x2.to("meta"), w)
    with pytest.raises(TypeError, match="weight is torch.float32 on meta"):
        product(x1, x2, w.to("meta"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    product = ClebschGordanProduct(3, 3, 3, 8, "external")
    x1, x2, w = _inputs(product, 700, True, torch.float32)
    expected = product(x1, x2, w)
    got = product.cuda()(x1.cuda(), x2.cuda(), w.cuda()).cpu()
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("shared_x2", [True, False])
def test_plain_form_equals_forward_values_and_gradients(shared_x2):
    product = ClebschGordanProduct(2, 2, 2, 3, weights="external").double()
    x1 = torch.randn(5, 9, 3, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(5, 9, *([] if shared_x2 else [3]), dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, *product.weight_shape, dtype=torch.float64, requires_grad=True)
    a, b = product(x1, x2, w), product.plain(x1, x2, w)
    assert torch.allclose(a, b, atol=1e-12)
    ga = torch.autograd.grad(a.square().sum(), (x1, x2, w))
    gb = torch.autograd.grad(b.square().sum(), (x1, x2, w))
    for u, v in zip(ga, gb):
        assert torch.allclose(u, v, atol=1e-11)


@pytest.mark.parametrize("paths", ["even", "odd", "all"])
def test_degree_one_closed_form_equals_the_grouped_kernel(paths):
    """Degrees <= 1 without the cross-product path take a closed form (scalar and dot
    products); it must equal the general grouped-GEMM kernel for every band-limit
    combination, weighted or not, and be what the product runs."""
    import itertools

    for l1, l2, lo in itertools.product((0, 1), repeat=3):
        if not coupling_paths(l1, l2, lo, paths):
            continue
        for weights in ("external", "internal", "none"):
            cg = ClebschGordanProduct(l1, l2, lo, 3, weights, paths=paths).double()
            assert cg._degree_one == ((1, 1, 1) not in cg.paths)
            if not cg._degree_one:
                continue
            x1 = torch.randn(7, (l1 + 1) ** 2, 3, dtype=torch.float64)
            x2 = torch.randn(7, (l2 + 1) ** 2, dtype=torch.float64)
            w = (
                torch.randn(7, *cg.weight_shape, dtype=torch.float64)
                if weights == "external"
                else None
            )
            internal = cg.weight[None] if weights == "internal" else w
            general = cg._shared_x2_forward(x1, x2, internal)
            assert (cg(x1, x2, w) - general).abs().max() < 1e-12, (l1, l2, lo, weights)
            assert torch.equal(cg(x1, x2, w), cg._degree_one_product(x1, x2, internal))


@pytest.mark.parametrize("lmax_out", [0, 1])
@pytest.mark.parametrize("paths", ["even", "odd"])
def test_degree_one_hand_written_backward(paths, lmax_out):
    """With per-edge weights and gradients, degrees <= 1 run a hand-written backward:
    its values and gradients (x1, x2 and the weights) equal the plain form's, it passes
    gradcheck and gradgradcheck (second derivatives through the plain form), and it is
    what the product runs."""
    if not coupling_paths(1, 1, lmax_out, paths):
        pytest.skip("no path")
    cg = ClebschGordanProduct(1, 1, lmax_out, 3, "external", paths=paths).double()
    if not cg._degree_one:
        pytest.skip("the cross-product path takes the grouped kernel")
    x1 = torch.randn(9, 4, 3, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, *cg.weight_shape, dtype=torch.float64, requires_grad=True)
    g = torch.randn(9, cg.dim_out, 3, dtype=torch.float64)
    fast = cg(x1, x2, w)
    node = fast.grad_fn  # behind the final reshape
    assert "_DegreeOneProductBackward" in (node.name(), node.next_functions[0][0].name())
    plain = cg._degree_one_plain(x1, x2, w)
    assert torch.allclose(fast, plain, atol=1e-13)
    for a, b in zip(torch.autograd.grad(fast, (x1, x2, w), g),
                    torch.autograd.grad(plain, (x1, x2, w), g)):  # fmt: skip
        assert torch.allclose(a, b, atol=1e-12)
    assert torch.autograd.gradcheck(cg, (x1, x2, w))
    assert torch.autograd.gradgradcheck(cg, (x1, x2, w))
