import pytest
import torch
from e3nn import o3 as e3o3

from geobasis.o3 import (
    from_e3nn,
    from_standard,
    irreps_string,
    random_rotation,
    spherical_harmonics,
    spherical_harmonics_standard,
    to_e3nn,
    to_standard,
    wigner_D,
)


def test_e3nn_layout_round_trip_and_equivariance():
    x = torch.randn(5, 16, 4, dtype=torch.float64)
    flat = to_e3nn(x)
    irreps = e3o3.Irreps(irreps_string(3, 4))
    assert flat.shape == (5, irreps.dim)
    assert torch.equal(from_e3nn(flat, irreps), x)
    assert torch.equal(from_e3nn(flat, str(irreps)), x)
    R = random_rotation(dtype=torch.float64)
    # rotating in our layout then converting == e3nn's own D on its layout
    ours = to_e3nn(torch.einsum("ij,njc->nic", wigner_D(3, R), x))
    theirs = flat @ irreps.D_from_matrix(R).t()
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_e3nn_layout_matches_e3nn_harmonics_layout():
    v = torch.randn(7, 3, dtype=torch.float64)
    y = spherical_harmonics(3, v)[..., None]  # one channel
    assert torch.allclose(
        to_e3nn(y), e3o3.spherical_harmonics("0e+1o+2e+3o", v, True, normalization="integral")
    )


def test_irreps_string():
    assert irreps_string(2, 8) == "8x0e+8x1o+8x2e"
    assert irreps_string(1, 2, "pseudo") == "2x0o+2x1e"


def test_standard_basis_round_trip_and_same_function():
    L = 10
    x = torch.randn(3, (L + 1) ** 2, 2, dtype=torch.float64)
    v = torch.randn(20, 3, dtype=torch.float64)
    f_e3nn = torch.einsum("nk,bkc->bnc", spherical_harmonics(L, v), x)
    f_std = torch.einsum("nk,bkc->bnc", spherical_harmonics_standard(L, v), to_standard(x))
    assert torch.allclose(f_e3nn, f_std, atol=1e-12)
    assert torch.allclose(from_standard(to_standard(x)), x, atol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="lmax"):
        to_e3nn(torch.randn(5, 10, 2))
    with pytest.raises(ValueError, match="multiplicity"):
        from_e3nn(torch.randn(2, 11), "1x0e+2x1o")
    with pytest.raises(ValueError, match="need"):
        from_e3nn(torch.randn(2, 5), "1x0e+1x1o")


def test_from_e3nn_refuses_mixed_parities():
    """``from_e3nn(x, "8x0e+8x1e")`` used to accept the wrong parity silently."""
    import pytest

    from geobasis.o3 import from_e3nn

    x = torch.randn(5, 32)
    assert from_e3nn(x, "8x0e+8x1o").shape == from_e3nn(x, "8x0o+8x1e").shape == (5, 4, 8)
    with pytest.raises(ValueError, match="mix natural .* and pseudo"):
        from_e3nn(x, "8x0e+8x1e")
