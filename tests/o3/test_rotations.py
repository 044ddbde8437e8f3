import pytest
import torch
from e3nn import o3 as e3o3

from geobasis import o3


def test_random_rotation_is_special_orthogonal():
    R = o3.random_rotation(100, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(R @ R.transpose(-1, -2), eye.expand(100, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(100, dtype=torch.float64))


def test_random_orthogonal_parities():
    assert (
        torch.linalg.det(o3.random_orthogonal(50, dtype=torch.float64, improper=True)) < 0
    ).all()
    dets = torch.linalg.det(o3.random_orthogonal(400, dtype=torch.float64))
    assert 100 < (dets < 0).sum() < 300


def test_random_rotation_is_haar_uniform():
    # the rotated north pole is uniform on the sphere: mean 0, second moment I/3
    v = o3.random_rotation(20000, dtype=torch.float64)[..., :, 2]
    assert v.mean(0).abs().max() < 0.03
    assert torch.allclose(v.t() @ v / 20000, torch.eye(3, dtype=torch.float64) / 3, atol=0.02)


def test_conversions_agree_with_e3nn():
    R = o3.random_rotation(20, dtype=torch.float64)
    q = o3.matrix_to_quaternion(R)
    assert torch.allclose(o3.quaternion_to_matrix(q), R, atol=1e-12)
    assert torch.allclose(e3o3.quaternion_to_matrix(q), R, atol=1e-12)
    axis, angle = o3.matrix_to_axis_angle(R)
    assert torch.allclose(o3.axis_angle_to_matrix(axis, angle), R, atol=1e-12)
    assert torch.allclose(e3o3.axis_angle_to_matrix(axis, angle), R, atol=1e-12)
    a, b, c = e3o3.matrix_to_angles(R)
    assert torch.allclose(o3.angles_to_matrix(a, b, c), R, atol=1e-12)
    a2, b2, c2 = o3.matrix_to_angles(R)
    assert torch.allclose(o3.angles_to_matrix(a2, b2, c2), R, atol=1e-12)
    for m_ours, m_e3nn in [
        (o3.matrix_x, e3o3.matrix_x),
        (o3.matrix_y, e3o3.matrix_y),
        (o3.matrix_z, e3o3.matrix_z),
    ]:
        t = torch.rand(5, dtype=torch.float64)
        assert torch.allclose(m_ours(t), m_e3nn(t))


def test_identity_axis_angle_is_finite():
    axis, angle = o3.matrix_to_axis_angle(torch.eye(3, dtype=torch.float64))
    assert torch.isfinite(axis).all() and float(angle) == 0.0


def test_bad_shapes():
    with pytest.raises(ValueError, match="3, 3"):
        o3.matrix_to_quaternion(torch.eye(4))
    with pytest.raises(ValueError, match="4"):
        o3.quaternion_to_matrix(torch.randn(3))
