import pytest
import torch
from e3nn import o3 as e3o3

from geobasis.o3 import random_orthogonal, random_rotation, spherical_harmonics, wigner_D


@pytest.mark.parametrize("lmax", [0, 3, 12, 16])
def test_harmonics_transform_with_wigner_D_under_O3(lmax):
    R = random_orthogonal(6, dtype=torch.float64)
    x = torch.randn(40, 3, dtype=torch.float64)
    lhs = spherical_harmonics(lmax, torch.einsum("bij,nj->bni", R, x))
    rhs = torch.einsum("bkj,nj->bnk", wigner_D(lmax, R), spherical_harmonics(lmax, x))
    assert (lhs - rhs).abs().max() <= 1e-12


def test_representation_properties():
    R1, R2 = random_orthogonal(2, dtype=torch.float64)
    D = lambda R: wigner_D(6, R)
    assert torch.allclose(D(R1 @ R2), D(R1) @ D(R2), atol=1e-12)
    assert torch.allclose(D(R1) @ D(R1).t(), torch.eye(49, dtype=torch.float64), atol=1e-12)
    inversion = -torch.eye(3, dtype=torch.float64)
    parity = torch.tensor(
        [(-1.0) ** l for l in range(7) for _ in range(2 * l + 1)], dtype=torch.float64
    )
    assert torch.allclose(D(inversion), torch.diag(parity), atol=1e-12)
    assert torch.allclose(wigner_D(6, inversion, pseudo=True), -torch.diag(parity), atol=1e-12)


def test_matches_e3nn_D_from_matrix():
    R = random_rotation(4, dtype=torch.float64)
    ref = e3o3.Irreps("0e+1o+2e+3o+4e").D_from_matrix(R)
    # e3nn evaluates its Wigner matrices through float32 constants
    assert (wigner_D(4, R) - ref).abs().max() <= 1e-5


def test_differentiable_in_R():
    axis = torch.randn(3, dtype=torch.float64)
    angle = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    from geobasis.o3 import axis_angle_to_matrix

    assert torch.autograd.gradcheck(lambda a: wigner_D(3, axis_angle_to_matrix(axis, a)), (angle,))


def test_errors():
    with pytest.raises(ValueError, match="3, 3"):
        wigner_D(2, torch.eye(2))
    with pytest.raises(TypeError):
        wigner_D(2, torch.eye(3, dtype=torch.long))
