import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.interpolate import BSpline
from scipy.special import spherical_jn

from geobasis.radial import (
    BesselBasis,
    BSplineBasis,
    ChebyshevBasis,
    FourierBasis,
    GaussianBasis,
    SphericalBesselBasis,
    spherical_bessel_roots,
)


def test_bessel_basis_formula_limit_and_pyg():
    from torch_geometric.nn.models.dimenet import BesselBasisLayer

    basis = BesselBasis(6, 5.0)
    r = torch.tensor([1e-6, 0.5, 2.0, 4.9], dtype=torch.float64)
    n = torch.arange(1, 7, dtype=torch.float64)
    expected = math.sqrt(2 / 5.0) * torch.sin(n * math.pi * r[:, None] / 5.0) / r[:, None]
    assert torch.allclose(basis(r), expected, rtol=1e-9)
    at_zero = basis(torch.zeros(1, dtype=torch.float64))
    assert torch.allclose(at_zero, math.sqrt(2 / 5.0) * n * math.pi / 5.0)
    # PyG's layer is sin(n pi d / c) times its envelope (which holds the 1/d)
    pyg = BesselBasisLayer(6, cutoff=5.0, envelope_exponent=5)
    d = torch.tensor([0.5, 2.0, 4.0])
    sines = pyg(d) / pyg.envelope(d / 5.0)[:, None]
    assert torch.allclose(
        sines, BesselBasis(6, 5.0)(d) * d[:, None] / math.sqrt(2 / 5.0), atol=1e-5
    )


def test_bessel_basis_trainable_frequencies():
    basis = BesselBasis(4, 3.0, trainable=True)
    basis(torch.rand(10) * 3).sum().backward()
    assert basis.frequencies.grad is not None and torch.isfinite(basis.frequencies.grad).all()


def test_spherical_bessel_roots():
    roots = spherical_bessel_roots(6, 5).numpy()
    for l in range(7):
        assert np.abs(spherical_jn(l, roots[l])).max() < 1e-13
        assert (np.diff(roots[l]) > 0).all()


def test_spherical_bessel_basis_orthonormal_and_zero_at_cutoff():
    c = 4.0
    basis = SphericalBesselBasis(3, 4, c)
    r = torch.tensor([c], dtype=torch.float64)
    assert basis(r).abs().max() < 1e-14
    for l in range(4):
        for n in range(4):
            for m in range(4):
                f = lambda x: (
                    x
                    * x
                    * float(
                        basis(torch.tensor(x, dtype=torch.float64))[l, n]
                        * basis(torch.tensor(x, dtype=torch.float64))[l, m]
                    )
                )
                val = quad(f, 0, c, limit=200)[0]
                assert abs(val - (n == m)) < 1e-8


def test_spherical_bessel_basis_float32_stable_at_small_r():
    """Within 1e-6 relative of SciPy for x = r/c in [1e-6, 1], l <= 8, float32."""
    c = 5.0
    basis = SphericalBesselBasis(8, 6, c)
    x = torch.logspace(-6, 0, 3000)
    ours = basis(x * c).double().numpy()
    xd = (x * c).double().numpy() / c  # the float32 input, exactly
    ref = np.empty_like(ours)
    for l in range(9):
        for n in range(6):
            ref[:, l, n] = float(basis.norm[l, n]) * spherical_jn(l, float(basis.roots[l, n]) * xd)
    normal = np.abs(ref) > np.finfo(np.float32).tiny
    scale = np.abs(ref).max(0, keepdims=True)
    away_from_zeros = np.abs(ref) > 1e-4 * scale
    mask = normal & away_from_zeros
    assert (np.abs(ours - ref) / np.abs(ref))[mask].max() <= 1e-6
    # PyG's closed forms fail here; small arguments alone (no zeros nearby):
    small = normal & (xd[:, None, None] < 1e-2)
    assert (np.abs(ours - ref) / np.abs(ref))[small].max() <= 1e-6


def test_gaussian_basis():
    g = GaussianBasis(5, 4.0)
    out = g(torch.tensor([0.0, 1.0, 4.0]))
    assert out.shape == (3, 5)
    assert torch.allclose(out[0, 0], torch.tensor(1.0)) and torch.allclose(
        out[1, 1], torch.tensor(1.0)
    )


def test_chebyshev_basis_matches_numpy_and_parity():
    cheb = ChebyshevBasis(7, start=-2.0, end=2.0)
    x = torch.linspace(-2, 2, 33, dtype=torch.float64)
    ref = np.polynomial.chebyshev.chebvander(x.numpy() / 2, 6)
    assert np.allclose(cheb(x).numpy(), ref)
    parity = torch.tensor([(-1.0) ** k for k in range(7)], dtype=torch.float64)
    assert torch.allclose(cheb(-x), cheb(x) * parity)


@pytest.mark.parametrize("family,parity", [("even", 1.0), ("odd", -1.0)])
def test_fourier_families_have_their_symmetry(family, parity):
    basis = FourierBasis(6, family)
    x = torch.linspace(-1, 1, 41, dtype=torch.float64)
    assert torch.allclose(basis(-x), parity * basis(x), atol=1e-14)


def test_fourier_full_is_orthonormal_and_mixed():
    basis = FourierBasis(7, "full")
    x = (torch.arange(4000, dtype=torch.float64) + 0.5) / 4000 * 2 - 1
    b = basis(x)
    gram = b.t() @ b * (2 / 4000)
    assert torch.allclose(gram, torch.eye(7, dtype=torch.float64), atol=1e-9)
    assert not torch.allclose(basis(-x), basis(x)) and not torch.allclose(basis(-x), -basis(x))


@pytest.mark.parametrize("degree", [1, 2, 3, 5])
def test_bspline_matches_scipy_and_partition_of_unity(degree):
    n = 9
    basis = BSplineBasis(n, degree, start=-1.0, end=2.0)
    x = torch.linspace(-1, 2, 301, dtype=torch.float64)
    out = basis(x)
    assert torch.allclose(out.sum(-1), torch.ones_like(x), atol=1e-12)
    h = 3.0 / (n - degree)
    knots = np.array([-1 + (i - degree) * h for i in range(n + degree + 1)])
    ref = np.stack(
        [
            np.nan_to_num(
                BSpline.basis_element(knots[i : i + degree + 2], extrapolate=False)(x.numpy())
            )
            for i in range(n)
        ],
        -1,
    )
    assert (
        np.abs(out.numpy()[:-1] - ref[:-1]).max() < 1e-12
    )  # scipy's last element is open at the end


def test_bspline_gradcheck():
    basis = BSplineBasis(6, 3, 0.0, 1.0)
    x = torch.tensor([0.1, 0.37, 0.81], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(basis, (x,))


def test_errors():
    with pytest.raises(ValueError, match="num_basis"):
        BesselBasis(0, 1.0)
    with pytest.raises(ValueError, match="cutoff"):
        BesselBasis(3, -1.0)
    with pytest.raises(ValueError, match="family"):
        FourierBasis(3, "sine")
    with pytest.raises(ValueError, match="exceed"):
        BSplineBasis(3, 3)
    with pytest.raises(ValueError, match="start < end"):
        ChebyshevBasis(3, 1.0, 0.0)


def test_spherical_bessel_basis_gradcheck_including_zero():
    basis = SphericalBesselBasis(3, 3, 5.0).double()
    r = torch.tensor([0.0, 1e-3, 0.5, 3.0, 4.99], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(basis, (r,))
    # at r = 0 only the l = 1 functions have a slope: j_1'(0) = 1/3
    r0 = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(basis(r0)[0, 1, 0], r0)
    expected = basis.norm[1, 0] * basis.roots[1, 0] / 5.0 / 3.0
    assert torch.allclose(slope, expected.reshape(1))


def test_interval_bases_have_the_symmetry_they_claim():
    from geobasis.radial import INTERVAL_BASES, interval_basis

    s = torch.linspace(-1, 1, 101, dtype=torch.float64)
    for name in INTERVAL_BASES:
        b = interval_basis(name, 7)
        values, mirrored = b(s), b(-s)
        assert values.shape == (101, 7)
        if name == "fourier_even":
            assert torch.allclose(mirrored, values, atol=1e-14)
        elif name == "fourier_odd":
            assert torch.allclose(mirrored, -values, atol=1e-14)
        elif name in ("fourier", "chebyshev"):  # every function is even or odd
            parity = (mirrored * values).sum(0).sign()
            assert torch.allclose(mirrored, parity * values, atol=1e-13)
            assert (parity > 0).any() and (parity < 0).any()
        else:  # a mirror-symmetric set: b_k(-s) = b_{N-1-k}(s)
            assert torch.allclose(mirrored, values.flip(-1), atol=1e-13)
    with pytest.raises(ValueError, match="unknown basis"):
        interval_basis("wavelet", 4)


def test_bessel_basis_is_smooth_at_zero_to_second_order():
    """``torch.sinc`` gave a NaN second derivative at r = 0 (coincident atoms)."""
    import math

    from geobasis.radial import BesselBasis

    basis = BesselBasis(5, 3.0).double()
    r = torch.tensor([0.0, 1e-4, 0.7], dtype=torch.float64, requires_grad=True)
    values = basis(r)
    first = torch.stack([torch.autograd.grad(values[:, n].sum(), r, create_graph=True)[0]
                         for n in range(5)], -1)  # fmt: skip
    second = torch.stack([torch.autograd.grad(first[:, n].sum(), r, retain_graph=True)[0]
                          for n in range(5)], -1)  # fmt: skip
    f = torch.arange(1, 6, dtype=torch.float64) * math.pi / 3.0
    prefactor = math.sqrt(2 / 3.0)
    assert torch.allclose(values[0], prefactor * f)  # the r -> 0 limit
    assert torch.allclose(first[0], torch.zeros(5, dtype=torch.float64))
    assert torch.allclose(second[0], -prefactor * f**3 / 3, rtol=1e-9)
    exact = prefactor * torch.sin(f * 0.7) / 0.7
    assert torch.allclose(values[2], exact, rtol=1e-14)


@pytest.mark.parametrize(("lmax", "num_basis"), [(0, 4), (3, 6), (8, 8), (12, 12)])
def test_spherical_bessel_chebyshev_table_matches_scipy_in_float64(lmax, num_basis):
    """The table form is within 2e-8 relative of SciPy for x = r/c in [1e-8, 1], away from
    the zeros of j_l; without the e^{beta_l x^2} balance it loses six digits near the cutoff."""
    c = 4.0
    basis = SphericalBesselBasis(lmax, num_basis, c)
    x = torch.cat([torch.logspace(-8, 0, 1500, dtype=torch.float64), torch.rand(1500).double()])
    ours = basis(x * c).numpy()
    ref = np.stack(
        [
            [float(basis.norm[l, n]) * spherical_jn(l, float(basis.roots[l, n]) * x.numpy())
             for n in range(num_basis)]
            for l in range(lmax + 1)
        ]
    ).transpose(2, 0, 1)  # fmt: skip
    mask = (np.abs(ref) > 1e-4 * np.abs(ref).max(0, keepdims=True)) & (np.abs(ref) > 1e-300)
    assert (np.abs(ours - ref) / np.abs(ref))[mask].max() < 2e-8
    exact = SphericalBesselBasis(lmax, num_basis, c, method="recurrence")(x * c)
    assert torch.allclose(basis(x * c), exact, rtol=2e-8, atol=1e-12 * exact.abs().max())


def test_spherical_bessel_chebyshev_outside_the_cutoff_parity_and_shapes():
    c = 3.0
    basis = SphericalBesselBasis(4, 5, c)
    exact = SphericalBesselBasis(4, 5, c, method="recurrence")
    r = torch.tensor([[0.0, 1.0, 2.9], [3.0, 4.5, 9.0]], dtype=torch.float64)
    out = basis(r)
    assert out.shape == (2, 3, 5, 5)
    assert torch.allclose(out, exact(r), rtol=1e-8, atol=1e-12)  # beyond c: the recurrence
    # j_l(-y) = (-1)^l j_l(y)
    sign = (-1.0) ** torch.arange(5, dtype=torch.float64)
    assert torch.allclose(basis(-r), out * sign[:, None], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="method must be one of"):
        SphericalBesselBasis(2, 2, c, method="sympy")


def test_spherical_bessel_rows_by_doubling_equal_the_three_term_recurrence():
    """The forward's Chebyshev rows (written in place by doubling) give the same values as
    the plain form (three-term recurrence, what second derivatives differentiate)."""
    basis = SphericalBesselBasis(12, 12, 5.0)  # 34 rows: four doubling steps, a partial one
    r = torch.rand(300, dtype=torch.float64) * 5
    doubled = basis(r)
    plain = basis._table((r / 5.0).requires_grad_(True)).detach()
    assert torch.allclose(doubled, plain, rtol=1e-10, atol=1e-12 * plain.abs().max())
    assert basis(r.float()).dtype == torch.float32


def test_spherical_bessel_chebyshev_second_derivatives():
    basis = SphericalBesselBasis(3, 3, 5.0)
    r = torch.tensor([0.0, 1e-3, 0.7, 2.5, 4.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(basis, (r,))


def test_bessel_basis_chebyshev_form_equals_the_sines_everywhere():
    """sin(n theta)/r through U_{n-1}(cos theta): the closed form to 1e-14 of its maximum for
    r in [0, 1.4 c] (beyond the cutoff too), the limit n pi/c sqrt(2/c) at 0, and smooth
    second derivatives through r = 0 (a force loss on a zero-length edge)."""
    c, count = 4.0, 9
    basis = BesselBasis(count, c)
    r = torch.cat([torch.rand(2000, dtype=torch.float64) * 1.4 * c,
                   torch.logspace(-12, 0, 100, dtype=torch.float64)])  # fmt: skip
    n = torch.arange(1, count + 1, dtype=torch.float64)
    expected = math.sqrt(2 / c) * torch.sin(n * math.pi * r[:, None] / c) / r[:, None]
    assert (basis(r) - expected).abs().max() < 1e-14 * expected.abs().max()
    at_zero = basis(torch.zeros(2, 3, dtype=torch.float64))
    assert at_zero.shape == (2, 3, count)
    assert torch.allclose(at_zero, math.sqrt(2 / c) * n * math.pi / c, rtol=1e-14)
    points = torch.tensor([0.0, 1e-4, 0.9, 3.99, 4.0, 5.5], dtype=torch.float64)
    assert torch.autograd.gradgradcheck(basis, (points.requires_grad_(True),))
    trainable = BesselBasis(count, c, trainable=True).double()
    with torch.no_grad():
        trainable.frequencies.copy_(n * math.pi / c)
    assert torch.allclose(trainable(r), basis(r), rtol=1e-10, atol=1e-12)


def test_spherical_bessel_written_out_backward_equals_autograd_of_the_plain_form():
    basis = SphericalBesselBasis(6, 5, 2.0)
    r = torch.cat([torch.tensor([0.0, -0.7, 1e-5, 2.0]), torch.rand(200) * 2]).double()
    grad = torch.randn(r.shape[0], 7, 5, dtype=torch.float64)
    leaf = r.clone().requires_grad_(True)
    (written,) = torch.autograd.grad(basis(leaf), leaf, grad)  # _ChebyshevTable.backward
    x = (r / 2.0).requires_grad_(True)
    (plain,) = torch.autograd.grad(basis._table(x), x, grad)  # autograd over the recurrence
    assert torch.allclose(written, plain / 2.0, rtol=1e-10, atol=1e-12 * plain.abs().max())


def test_spherical_bessel_auto_method_checks_the_table():
    """The table verifies itself at construction; "auto" takes it only within
    TABLE_TOLERANCE (to lmax = num_basis = 16), else the exact recurrence, and its values
    then equal the recurrence's; "chebyshev" forces the table."""
    small = SphericalBesselBasis(8, 8, 5.0)
    assert small.method == "chebyshev" and small.table_error < small.TABLE_TOLERANCE
    large = SphericalBesselBasis(24, 24, 5.0)
    assert large.method == "recurrence" and large.table_error > large.TABLE_TOLERANCE
    r = torch.rand(50, dtype=torch.float64) * 5
    exact = SphericalBesselBasis(24, 24, 5.0, method="recurrence")
    assert torch.equal(large(r), exact(r))
    assert SphericalBesselBasis(24, 24, 5.0, method="chebyshev").method == "chebyshev"
