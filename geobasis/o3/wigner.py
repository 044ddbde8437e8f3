r"""Wigner D matrices of the real spherical harmonics, for any degree and for O(3).

For an orthogonal matrix :math:`R` (rotation or reflection) the harmonics of degree
:math:`l` transform as :math:`Y_l(R\hat r) = D_l(R)\, Y_l(\hat r)`.  Because the
harmonics are orthonormal, :math:`D_l` is the exact projection

.. math::

    D_l(R)_{mn} = \int_{S^2} Y_l^m(R\hat r)\, Y_l^n(\hat r)\, d\Omega
    = \sum_g w_g\, Y_l^m(R\hat r_g)\, Y_l^n(\hat r_g),

evaluated with a Gauss–Legendre grid that integrates degree :math:`2l` exactly.  The
same formula covers reflections: for :math:`\det R = -1` it contains the natural parity
:math:`(-1)^l` of the harmonics.  Pseudotensors (parity :math:`(-1)^{l+1}`) take an extra
factor :math:`\det R` (``pseudo=True``).  The result is differentiable in :math:`R`.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from geobasis.o3._spherical_harmonics import spherical_harmonics
from geobasis.o3.layout import check_lmax, degree_slice
from geobasis.o3.s2grid import S2Grid

__all__ = ["wigner_D"]


@lru_cache(maxsize=16)
def _projection_grid(lmax: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    grid = S2Grid(lmax, lmax + 1, 2 * lmax + 1)
    return grid.points.to(device, dtype), grid.weighted_harmonics.to(device, dtype)


def wigner_D(lmax: int, R: Tensor, pseudo: bool = False) -> Tensor:
    r"""Block-diagonal Wigner matrices ``[..., (lmax+1)**2, (lmax+1)**2]`` of ``R [..., 3, 3]``.

    ``Y(R x) = D(R) Y(x)`` for the harmonics of :func:`spherical_harmonics` (any
    normalisation), for rotations and reflections alike.

    Args:
        lmax: highest degree.
        R: orthogonal matrices ``[..., 3, 3]``.
        pseudo: multiply by :math:`\det R` (pseudotensor parity :math:`(-1)^{l+1}`).
    """
    check_lmax(lmax)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"R must have shape [..., 3, 3], got {tuple(R.shape)}")
    if not R.is_floating_point():
        raise TypeError(f"R must be a floating-point tensor, got {R.dtype}")
    points, weighted = _projection_grid(lmax, R.dtype, R.device)
    rotated = torch.einsum("...ij,gj->...gi", R, points)  # R r_g
    y_rot = spherical_harmonics(lmax, rotated)  # [..., G, dim]
    dim = (lmax + 1) ** 2
    out = R.new_zeros((*R.shape[:-2], dim, dim))
    for l in range(lmax + 1):
        s = degree_slice(l)
        out[..., s, s] = torch.einsum("...gm,gn->...mn", y_rot[..., s], weighted[:, s])
    if pseudo:
        out = out * torch.linalg.det(R)[..., None, None]
    return out
