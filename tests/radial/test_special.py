import math

import mpmath
import numpy as np
import pytest
import torch
from scipy.special import ive, spherical_jn

from geobasis.radial import log_iv, log_kv, spherical_jn_all
from geobasis.radial import spherical_jn as gb_spherical_jn

mpmath.mp.dps = 40


def _ref_log_kv(v: float, x: float) -> float:
    try:
        return float(mpmath.log(mpmath.besselk(v, x, maxprec=2000)))
    except Exception:
        # fall back on an independent adaptive quadrature of the integral representation
        v, x = mpmath.mpf(v), mpmath.mpf(x)
        ts = mpmath.asinh(v / x)
        hs = -x * mpmath.cosh(ts) + v * ts
        w = 1 / mpmath.sqrt(x * mpmath.cosh(ts))
        pts = sorted(
            {
                ts - 80 * w - 60,
                ts - 40 * w,
                ts - 10 * w,
                ts,
                ts + 10 * w,
                ts + 40 * w,
                ts + 80 * w + 60,
            }
        )
        f = lambda t: mpmath.exp(-x * mpmath.cosh(t) + v * t - hs)
        return float(hs + mpmath.log(mpmath.quad(f, pts) / 2))


def _ref_log_iv(v: float, x: float) -> float:
    return float(mpmath.log(mpmath.besseli(v, x, maxprec=3000)))


ORDERS = [0.0, 0.3, 1.0, 2.5, 7.0, 19.9, 24.6, 25.0, 50.0, 100.5, 333.0, 1000.0]
ARGS = [
    1e-8,
    1e-5,
    1e-3,
    0.1,
    0.5,
    1.0,
    3.0,
    10.0,
    29.9,
    30.1,
    50.0,
    100.0,
    500.0,
    1000.0,
    5000.0,
    1e4,
]


def _relative(ours: float, ref: float) -> float:
    # relative error of the log, and of the function itself where |log| < 1
    return abs(ours - ref) / max(1.0, abs(ref))


@pytest.mark.parametrize("kind", ["i", "k"])
def test_log_bessel_against_mpmath(kind):
    v, x = torch.meshgrid(
        torch.tensor(ORDERS, dtype=torch.float64),
        torch.tensor(ARGS, dtype=torch.float64),
        indexing="ij",
    )
    ours = (log_iv if kind == "i" else log_kv)(v, x)
    ref_fn = _ref_log_iv if kind == "i" else _ref_log_kv
    worst = max(
        _relative(float(ours[i, j]), ref_fn(ORDERS[i], ARGS[j]))
        for i in range(len(ORDERS))
        for j in range(len(ARGS))
    )
    assert worst <= 1e-10


def test_log_iv_where_scipy_under_or_overflows():
    # ive(1000, 1e-3) underflows to 0; our value is finite and right
    assert ive(1000.0, 1e-3) == 0.0
    assert abs(float(log_iv(1000.0, 1e-3)) - _ref_log_iv(1000.0, 1e-3)) <= 1e-10 * abs(
        _ref_log_iv(1000.0, 1e-3)
    )
    assert torch.isfinite(log_kv(torch.tensor(1000.0), torch.tensor(1e-8)))


def test_special_values():
    assert float(log_iv(0.0, 0.0)) == 0.0
    assert float(log_iv(2.0, 0.0)) == -math.inf
    assert float(log_kv(1.0, 0.0)) == math.inf
    assert torch.allclose(log_kv(-2.5, 3.0), log_kv(2.5, 3.0))


def test_log_bessel_gradients():
    v = torch.tensor([0.5, 3.0, 40.0], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([0.7, 45.0, 12.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(log_iv, (v, x))
    assert torch.autograd.gradcheck(log_kv, (v, x))
    # d/dx log I_v = I_v'/I_v = I_(v+1)/I_v + v/x
    (g,) = torch.autograd.grad(log_iv(v, x).sum(), x)
    expected = (
        torch.exp(log_iv(v.detach() + 1, x.detach()) - log_iv(v.detach(), x.detach()))
        + v.detach() / x.detach()
    )
    assert torch.allclose(g, expected, rtol=1e-10)


def test_log_bessel_float32_in_float32_out():
    out = log_iv(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]))
    assert out.dtype == torch.float32
    assert log_kv(2.0, 3.0).dtype == torch.float64


def test_spherical_jn_against_scipy_everywhere():
    x = torch.logspace(-8, 2, 4000, dtype=torch.float64)
    ours = spherical_jn_all(12, x).numpy()
    ref = np.stack([spherical_jn(l, x.numpy()) for l in range(13)], -1)
    # relative error, with the local envelope 1/x standing in near the zeros
    scale = np.maximum(np.abs(ref), 1e-3 / np.maximum(x.numpy(), 1.0)[:, None])
    assert (np.abs(ours - ref) / scale).max() <= 1e-10


def test_spherical_jn_small_argument_relative_accuracy():
    x = torch.logspace(-6, -2, 200, dtype=torch.float64)
    for l in range(9):
        series = x**l / math.prod(range(1, 2 * l + 2, 2)) * (1 - x**2 / (2 * (2 * l + 3)))
        assert torch.allclose(gb_spherical_jn(l, x), series, rtol=1e-8, atol=0)


def test_spherical_jn_parity_zero_and_gradient():
    x = torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    j = spherical_jn_all(4, x)
    assert torch.allclose(
        j[0], j[2] * torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0], dtype=torch.float64)
    )
    assert torch.equal(j[1].detach(), torch.tensor([1.0, 0, 0, 0, 0], dtype=torch.float64))
    assert torch.autograd.gradcheck(
        lambda t: spherical_jn_all(6, t),
        (torch.tensor([0.0, 1e-4, 0.3, 5.0, 12.0], dtype=torch.float64, requires_grad=True),),
    )
