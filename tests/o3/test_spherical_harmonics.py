import math

import numpy as np
import pytest
import torch
from e3nn import o3 as e3o3
from scipy.special import sph_harm_y

from geobasis.o3 import SphericalHarmonics, spherical_harmonics, spherical_harmonics_standard


def _e3nn(lmax, x, normalize=True, normalization="integral"):
    return e3o3.spherical_harmonics(
        list(range(lmax + 1)), x, normalize, normalization=normalization
    )


@pytest.mark.parametrize("normalization", ["integral", "component", "norm"])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_e3nn_float64(normalization, normalize):
    x = torch.randn(300, 3, dtype=torch.float64) * 2
    x[0] = 0.0
    x[1] = torch.tensor([0.0, 2.0, 0.0])  # polar axis
    x[2] = torch.tensor([0.0, -0.5, 0.0])
    for lmax in range(0, 13):
        ours = spherical_harmonics(lmax, x, normalize, normalization)
        ref = _e3nn(lmax, x, normalize, normalization)
        scale = 1.0 if normalize else float(ref.abs().max())
        assert (ours - ref).abs().max() <= 1e-12 * max(scale, 1.0), lmax


def test_matches_e3nn_float32():
    from geobasis.o3._harmonic_polynomials import max_degree

    x = torch.randn(5000, 3)
    MAX_DEGREE = max_degree(x)  # 4 with the C kernel, else 3
    exact = spherical_harmonics(12, x.double())  # float64 at the same float32 inputs
    for lmax in range(0, 13):
        dim = (lmax + 1) ** 2
        ours = (spherical_harmonics(lmax, x).double() - exact[:, :dim]).abs().max()
        theirs = (_e3nn(lmax, x).double() - exact[:, :dim]).abs().max()
        diff = (spherical_harmonics(lmax, x) - _e3nn(lmax, x)).abs().max()
        assert ours <= 1e-6, (lmax, ours)
        if lmax <= MAX_DEGREE:  # float32 monomials: as accurate as e3nn's float32 formulas
            assert diff <= 1e-6, (lmax, diff)
            assert ours <= 2 * theirs + 1e-7, (lmax, ours, theirs)
        else:
            # above, geobasis works in float64 and rounds once: never further from
            # the exact value than e3nn's float32 polynomials, whose own error (about
            # 1e-6 at l = 8..12) then bounds the difference
            assert ours <= theirs, (lmax, ours, theirs)
            assert diff <= theirs + ours, (lmax, diff)


def _scipy_real_e3nn_basis(lmax, v):
    """Independent reference: SciPy's complex Y_l^m with the documented basis change."""
    # e3nn's basis is the z-polar real basis (no Condon-Shortley phase) at (z, x, y)
    xp, yp, zp = v[:, 2], v[:, 0], v[:, 1]
    theta, phi = np.arccos(np.clip(zp, -1, 1)), np.arctan2(yp, xp)
    out = []
    for l in range(lmax + 1):
        for m in range(-l, l + 1):
            y = sph_harm_y(l, abs(m), theta, phi) * (-1) ** abs(m)  # remove the CS phase
            out.append(math.sqrt(2) * (y.real if m > 0 else y.imag) if m != 0 else y.real)
    return np.stack(out, -1)


def test_high_degree_against_scipy():
    v = torch.nn.functional.normalize(torch.randn(200, 3, dtype=torch.float64), dim=-1)
    v[0] = torch.tensor([0.0, 1.0, 0.0])
    ours = spherical_harmonics(24, v).numpy()
    ref = _scipy_real_e3nn_basis(24, v.numpy())
    assert np.abs(ours - ref).max() <= 1e-12


def test_standard_basis_against_scipy():
    v = torch.nn.functional.normalize(torch.randn(100, 3, dtype=torch.float64), dim=-1)
    theta, phi = torch.acos(v[:, 2]).numpy(), torch.atan2(v[:, 1], v[:, 0]).numpy()
    ref = []
    for l in range(9):
        for m in range(-l, l + 1):
            y = sph_harm_y(l, abs(m), theta, phi)  # with Condon-Shortley phase
            ref.append(math.sqrt(2) * (y.real if m > 0 else y.imag) if m != 0 else y.real)
    ref = np.stack(ref, -1)
    assert np.abs(spherical_harmonics_standard(8, v).numpy() - ref).max() <= 1e-12


def test_zero_vector_and_poles_are_finite_with_finite_gradients():
    x = torch.tensor(
        [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -3.0, 0.0], [1e-30, 1.0, 0.0]], dtype=torch.float64
    )
    x.requires_grad_(True)
    y = spherical_harmonics(10, x)
    assert torch.isfinite(y).all()
    assert torch.allclose(y[0, 1:], torch.zeros(120, dtype=torch.float64))
    (g,) = torch.autograd.grad((y * torch.randn_like(y)).sum(), x)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("normalize", [True, False])
def test_gradients_match_e3nn(normalize):
    x = torch.randn(200, 3, dtype=torch.float64, requires_grad=True)
    for lmax in (1, 2, 3, 4, 9):  # monomials (lmax <= 3) and the recurrence
        w = torch.randn(200, (lmax + 1) ** 2, dtype=torch.float64)
        (g1,) = torch.autograd.grad((spherical_harmonics(lmax, x, normalize) * w).sum(), x)
        (g2,) = torch.autograd.grad((_e3nn(lmax, x, normalize) * w).sum(), x)
        assert (g1 - g2).abs().max() <= 1e-11 * max(1.0, float(g2.abs().max()))


@pytest.mark.parametrize("lmax", [2, 3, 5])  # monomials and the recurrence
@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck_and_gradgradcheck(normalize, lmax):
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    f = lambda v: spherical_harmonics(lmax, v, normalize)
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_second_derivative_matches_e3nn():
    x = torch.randn(50, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 49, dtype=torch.float64)

    def hessian_vector(fn):
        (g,) = torch.autograd.grad((fn(6, x) * w).sum(), x, create_graph=True)
        (h,) = torch.autograd.grad((g**2).sum(), x)
        return h

    assert torch.allclose(hessian_vector(spherical_harmonics), hessian_vector(_e3nn), atol=1e-10)


def test_monomial_coefficients_are_block_diagonal_and_exact():
    """The low-degree form ``M(v) C``: a degree-l harmonic uses degree-l monomials only,
    and the table reproduces the recurrence in float64 (solid harmonics too)."""
    from geobasis.o3._harmonic_polynomials import (
        MAX_DEGREE,
        _degree_start,
        harmonic_coefficients,
        num_monomials,
    )

    MAX_DEGREE = max(MAX_DEGREE.values())  # the highest of any device

    for lmax in range(MAX_DEGREE + 3):
        table = harmonic_coefficients(lmax, "component")
        assert table.shape == (num_monomials(lmax), (lmax + 1) ** 2)
        for l in range(lmax + 1):
            block = table[:, l * l : (l + 1) ** 2].clone()
            block[_degree_start(l) : _degree_start(l + 1)] = 0
            assert torch.equal(block, torch.zeros_like(block)), (lmax, l)
    x = torch.randn(300, 3, dtype=torch.float64) * 2
    for normalize in (True, False):
        for lmax in range(MAX_DEGREE + 1):
            fast = SphericalHarmonics(lmax, normalize)
            assert torch.allclose(fast(x), fast._recurrence(x), atol=1e-12, rtol=1e-12)


def test_batch_shapes_and_module():
    x = torch.randn(2, 5, 7, 3)
    y = SphericalHarmonics(3, normalization="component")(x)
    assert y.shape == (2, 5, 7, 16)
    assert torch.allclose(
        y, spherical_harmonics(3, x.reshape(-1, 3), normalization="component").reshape(2, 5, 7, 16)
    )
    assert spherical_harmonics(2, torch.zeros(0, 3)).shape == (0, 9)


def test_orthonormal_integral_normalization():
    from geobasis.o3 import S2Grid

    grid = S2Grid(10, 12, 24)
    gram = grid.harmonics.t() @ (grid.harmonics * grid.weights[:, None])
    assert torch.allclose(gram, torch.eye(121, dtype=torch.float64), atol=1e-12)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="lmax"):
        spherical_harmonics(-1, torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        spherical_harmonics(2, torch.randn(3, 4))
    with pytest.raises(ValueError, match="normalization"):
        spherical_harmonics(2, torch.randn(3, 3), normalization="unit")
    with pytest.raises(TypeError, match="floating"):
        SphericalHarmonics(2)(torch.ones(3, 3, dtype=torch.long))


@pytest.mark.parametrize("lmax", [1, 2, 4])
def test_zero_vector_has_finite_derivatives_to_second_order(lmax):
    """The second derivative at the zero vector was NaN: a force loss on a frame with two
    coincident atoms turned every parameter into NaN."""
    g = torch.Generator().manual_seed(lmax)
    v = torch.randn(3, 3, dtype=torch.float64, generator=g)
    v[0] = 0.0
    v.requires_grad_()
    w = torch.randn(3, (lmax + 1) ** 2, dtype=torch.float64, generator=g)
    y = spherical_harmonics(lmax, v)
    (first,) = torch.autograd.grad((y * w).sum(), v, create_graph=True)
    (second,) = torch.autograd.grad(first.square().sum(), v)
    assert torch.isfinite(first).all() and torch.isfinite(second).all()
    assert torch.equal(first[0], torch.zeros(3, dtype=torch.float64))  # no direction at 0
    # away from zero nothing changed: the same as the double-backward-free path
    (plain,) = torch.autograd.grad((spherical_harmonics(lmax, v) * w).sum(), v)
    assert torch.allclose(plain, first.detach(), atol=1e-12)


def test_float32_cpu_table_is_padded_and_gives_the_float64_values_and_gradients():
    """On CPU in float32 the monomial table carries zero columns up to a multiple of 16
    (a faster GEMM shape); output and gradients are those of float64."""
    x = torch.randn(500, 3, dtype=torch.float64)
    w = torch.randn(500, 16, dtype=torch.float64)
    for lmax in (2, 3):
        module = SphericalHarmonics(lmax)
        dim = (lmax + 1) ** 2
        x32 = x.float().requires_grad_()
        y32 = module(x32)
        (g32,) = torch.autograd.grad((y32 * w[:, :dim].float()).sum(), x32)
        assert module._coefficients[(torch.float32, x32.device)].shape[1] == 16
        x64 = x.clone().requires_grad_()
        y64 = module(x64)
        (g64,) = torch.autograd.grad((y64 * w[:, :dim]).sum(), x64)
        assert y32.shape == (500, dim) and y32.is_contiguous()
        assert torch.allclose(y32.double(), y64, atol=1e-6)
        assert torch.allclose(g32.double(), g64, atol=1e-4 * float(g64.abs().max()))


@pytest.mark.parametrize("lmax", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_results_do_not_share_scratch_memory(lmax, dtype):
    """Monomials and padded outputs live in reused buffers: a second call (values and
    gradients) must leave the first call's results untouched."""
    g = torch.Generator().manual_seed(3)
    a, b = (torch.randn(50, 3, generator=g, dtype=dtype) for _ in range(2))
    first = spherical_harmonics(lmax, a)
    expected = first.clone()
    leaf = a.clone().requires_grad_()
    y = spherical_harmonics(lmax, leaf)
    spherical_harmonics(lmax, b)  # overwrites the scratch buffers
    y.backward(torch.ones_like(y))
    reference = a.clone().requires_grad_()
    spherical_harmonics(lmax, reference).backward(torch.ones_like(y))
    assert torch.equal(first, expected)
    assert torch.equal(leaf.grad, reference.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("normalize", [True, False])
def test_native_harmonics_equal_the_pytorch_monomials(monkeypatch, dtype, normalize):
    """The C kernel (``_harmonics.c``) against the PyTorch monomial form: values and
    gradients, a partial last tile (37 vectors), the zero vector, three threads."""
    from geobasis.o3 import _harmonic_polynomials as polynomials
    from geobasis.o3 import _harmonics_native as native

    if not native.usable(torch.empty(0), 0):
        pytest.skip("no C compiler: the C harmonics are not built (the PyTorch form runs)")
    x = torch.randn(37, 3, dtype=torch.float64) * 3
    x[5] = 0
    probe = torch.randn(37, 25, dtype=torch.float64)
    monkeypatch.setattr(native, "_VECTORS_PER_THREAD", 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    results = {}
    try:
        for form in ("native", "pytorch"):
            if form == "pytorch":
                monkeypatch.setattr(native, "usable", lambda v, lmax: False)
            for lmax in range(5):  # the C kernel is used up to lmax 4
                table = polynomials.device_coefficients(
                    polynomials.harmonic_coefficients(lmax, "integral"), dtype, x.device
                )
                v = x.to(dtype, copy=True).requires_grad_()
                y = polynomials.monomial_harmonics(lmax, v, table, normalize)
                (y * probe[:, : y.shape[1]].to(dtype)).sum().backward()
                results[form, lmax] = (y.detach(), v.grad)
    finally:
        torch.set_num_threads(threads)
    tolerance = 1e-12 if dtype == torch.float64 else 2e-6
    for lmax in range(5):
        for fused, plain in zip(results["native", lmax], results["pytorch", lmax], strict=True):
            assert (fused - plain).abs().max() <= tolerance * (1 + plain.abs().max()), lmax


def test_the_c_monomials_reach_lmax_4_on_cpu():
    from geobasis.o3 import _harmonics_native as native
    from geobasis.o3._harmonic_polynomials import MAX_DEGREE, max_degree

    for dtype in (torch.float32, torch.float64):
        x = torch.randn(3, 3, dtype=dtype)
        assert max_degree(x) == (4 if native.usable(x, 4) else MAX_DEGREE["cpu"])
