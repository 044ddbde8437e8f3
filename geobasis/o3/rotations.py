r"""Rotations and reflections: random elements of SO(3) / O(3) and conversions.

Conventions are e3nn's: a rotation matrix acts on column vectors, :math:`x' = R x`;
Euler angles are e3nn's :math:`(\alpha, \beta, \gamma)` with
:math:`R = R_y(\alpha) R_x(\beta) R_y(\gamma)`; quaternions are ``[w, x, y, z]``
(scalar first, unit norm); an axis-angle is a unit axis ``[..., 3]`` and an angle
``[...]`` (right-hand rule).

Reference: Shoemake, "Uniform random rotations", Graphics Gems III (1992) for
:func:`random_quaternion`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "random_rotation",
    "random_orthogonal",
    "random_quaternion",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "angles_to_matrix",
    "matrix_to_angles",
    "matrix_x",
    "matrix_y",
    "matrix_z",
]


def _shape(shape: int | tuple[int, ...] | torch.Size) -> tuple[int, ...]:
    return (shape,) if isinstance(shape, int) else tuple(shape)


def random_quaternion(
    shape: int | tuple[int, ...] = (),
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Uniformly distributed unit quaternions ``[*shape, 4]`` (normalised Gaussian 4-vectors)."""
    q = torch.randn(*_shape(shape), 4, dtype=dtype, device=device, generator=generator)
    return q / q.norm(dim=-1, keepdim=True)


def random_rotation(
    shape: int | tuple[int, ...] = (),
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Haar-uniform random rotation matrices ``[*shape, 3, 3]`` (det = +1)."""
    return quaternion_to_matrix(random_quaternion(shape, dtype, device, generator))


def random_orthogonal(
    shape: int | tuple[int, ...] = (),
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    improper: bool | None = None,
) -> Tensor:
    """Haar-uniform random elements of O(3) ``[*shape, 3, 3]``.

    With ``improper=None`` each matrix is a reflection (det = -1) with probability 1/2;
    ``improper=True`` forces det = -1 (a rotation composed with the inversion
    :math:`-I`), ``improper=False`` gives rotations only.
    """
    rot = random_rotation(shape, dtype, device, generator)
    if improper is None:
        flip = torch.randint(0, 2, _shape(shape), device=rot.device, generator=generator)
        sign = 1.0 - 2.0 * flip.to(rot.dtype)
    else:
        sign = torch.full(
            _shape(shape), -1.0 if improper else 1.0, dtype=rot.dtype, device=rot.device
        )
    return rot * sign[..., None, None]


def quaternion_to_matrix(q: Tensor) -> Tensor:
    r"""Unit quaternion ``[..., 4]`` (w, x, y, z) to rotation matrix ``[..., 3, 3]``."""
    if q.shape[-1] != 4:
        raise ValueError(f"quaternions must have shape [..., 4], got {tuple(q.shape)}")
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(R: Tensor) -> Tensor:
    r"""Rotation matrix ``[..., 3, 3]`` to unit quaternion ``[..., 4]`` with ``w >= 0``.

    Uses the numerically stable branch (largest diagonal combination) per element.
    """
    _check_matrix(R)
    xx, yy, zz = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    tr = xx + yy + zz
    # 4 w, 4 x, 4 y, 4 z (each up to a common factor) from the four standard branches
    a, b, c = R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]
    d, e, f = R[..., 0, 1] + R[..., 1, 0], R[..., 0, 2] + R[..., 2, 0], R[..., 1, 2] + R[..., 2, 1]
    cands = torch.stack(
        [
            torch.stack([1 + tr, a, b, c], -1),
            torch.stack([a, 1 + xx - yy - zz, d, e], -1),
            torch.stack([b, d, 1 - xx + yy - zz, f], -1),
            torch.stack([c, e, f, 1 - xx - yy + zz], -1),
        ],
        dim=-2,
    )
    diag = torch.stack([tr, xx, yy, zz], -1)
    best = diag.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q.dtype)


def axis_angle_to_matrix(axis: Tensor, angle: Tensor) -> Tensor:
    r"""Rodrigues' formula :math:`R = I + \sin\theta K + (1 - \cos\theta) K^2`."""
    if axis.shape[-1] != 3:
        raise ValueError(f"axis must have shape [..., 3], got {tuple(axis.shape)}")
    axis = axis / axis.norm(dim=-1, keepdim=True)
    angle = torch.as_tensor(angle, dtype=axis.dtype, device=axis.device)
    half = angle / 2
    q = torch.cat([torch.cos(half)[..., None], axis * torch.sin(half)[..., None]], dim=-1)
    return quaternion_to_matrix(q)


def matrix_to_axis_angle(R: Tensor) -> tuple[Tensor, Tensor]:
    """Rotation matrix to ``(axis [..., 3], angle [...])`` with angle in ``[0, pi]``."""
    q = matrix_to_quaternion(R)
    vec = q[..., 1:]
    norm = vec.norm(dim=-1)
    angle = 2 * torch.atan2(norm, q[..., 0])
    default = torch.zeros_like(vec)
    default[..., 1] = 1.0  # any axis for the identity
    axis = torch.where(norm[..., None] > 0, vec / norm.clamp_min(1e-300)[..., None], default)
    return axis, angle


def matrix_x(angle: Tensor) -> Tensor:
    """Rotation by ``angle`` about the x axis, ``[..., 3, 3]``."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*angle.shape, 3, 3)


def matrix_y(angle: Tensor) -> Tensor:
    """Rotation by ``angle`` about the y axis, ``[..., 3, 3]``."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*angle.shape, 3, 3)


def matrix_z(angle: Tensor) -> Tensor:
    """Rotation by ``angle`` about the z axis, ``[..., 3, 3]``."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*angle.shape, 3, 3)


def angles_to_matrix(alpha: Tensor, beta: Tensor, gamma: Tensor) -> Tensor:
    r"""e3nn's Euler angles: :math:`R = R_y(\alpha) R_x(\beta) R_y(\gamma)`."""
    alpha, beta, gamma = torch.broadcast_tensors(
        torch.as_tensor(alpha), torch.as_tensor(beta), torch.as_tensor(gamma)
    )
    return matrix_y(alpha) @ matrix_x(beta) @ matrix_y(gamma)


def matrix_to_angles(R: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Inverse of :func:`angles_to_matrix` (:math:`\beta \in [0, \pi]`)."""
    _check_matrix(R)
    # R e_y = R_y(alpha) R_x(beta) e_y gives alpha and beta
    y = R[..., :, 1]
    y = y / y.norm(dim=-1, keepdim=True)
    beta = torch.acos(y[..., 1].clamp(-1, 1))
    alpha = torch.atan2(y[..., 0], y[..., 2])
    rest = (matrix_x(beta) @ matrix_y(alpha).transpose(-1, -2)) @ R  # = R_y(gamma)
    gamma = torch.atan2(rest[..., 0, 2], rest[..., 0, 0])
    return alpha, beta, gamma


def _check_matrix(R: Tensor) -> None:
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must have shape [..., 3, 3], got {tuple(R.shape)}")
