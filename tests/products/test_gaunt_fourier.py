"""GauntFourierProduct: the harmonics-to-Fourier table is sparse and exact."""

import math

import numpy as np
import torch

from geobasis.o3 import spherical_harmonics
from geobasis.products import sh_to_fourier


def test_sh_to_fourier_is_sparse_and_exact():
    lmax = 5
    coefficients = sh_to_fourier(lmax)  # [u, v, d]
    n = 2 * lmax + 1
    ms = [m for l in range(lmax + 1) for m in range(-l, l + 1)]
    ls = [l for l in range(lmax + 1) for _ in range(2 * l + 1)]
    freqs = np.fft.fftfreq(n, 1 / n).round().astype(int)
    for d, (l, m) in enumerate(zip(ls, ms, strict=True)):
        nz_u, nz_v = np.nonzero(coefficients[:, :, d])
        assert set(np.abs(freqs[nz_v])) <= {abs(m)}
        assert np.abs(freqs[nz_u]).max(initial=0) <= l
    # reconstruct the harmonics at random angles from their Fourier coefficients
    rng = np.random.default_rng(0)
    beta, alpha = rng.uniform(0, math.pi, 20), rng.uniform(0, 2 * math.pi, 20)
    phase = np.exp(1j * (freqs[:, None, None] * beta + freqs[None, :, None] * alpha))
    values = np.einsum("uvd,uvp->pd", coefficients, phase).real
    points = np.stack(
        [np.sin(beta) * np.sin(alpha), np.cos(beta), np.sin(beta) * np.cos(alpha)], -1
    )
    expected = spherical_harmonics(lmax, torch.from_numpy(points)).numpy()
    assert np.abs(values - expected).max() < 1e-12


def test_half_precision_is_refused_with_a_clear_error():
    import pytest

    from geobasis.products import GauntFourierProduct

    product = GauntFourierProduct(2, 2, 2, weights="none").half()
    x1, x2 = torch.randn(4, 9, 3).half(), torch.randn(4, 9).half()
    with pytest.raises(TypeError, match="torch.float16 inputs are not supported"):
        product(x1, x2)
