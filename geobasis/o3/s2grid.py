r"""Quadrature grids on the sphere and band-limited transforms to and from them.

A grid has :math:`n_\beta` Gauss–Legendre nodes in :math:`\cos\beta` along the polar
axis (:math:`y`, e3nn's convention) times :math:`n_\alpha` uniform azimuths.  It
integrates exactly every polynomial of degree :math:`\le \min(2 n_\beta - 1,
n_\alpha - 1)` on the sphere, so with :math:`n_\beta \ge L + 1` and
:math:`n_\alpha \ge 2L + 1` the transforms

.. math::

    f(\hat r_g) = \sum_{lm} x_{lm} Y_l^m(\hat r_g) \quad (\text{to\_grid}), \qquad
    x_{lm} = \sum_g w_g f(\hat r_g) Y_l^m(\hat r_g) \quad (\text{from\_grid})

are exact inverses on signals of degree :math:`\le L`.  For the product of two signals
of degrees :math:`L_1, L_2` use a grid for :math:`L_1 + L_2` (Driscoll & Healy, 1994;
the Gauss–Legendre variant of e.g. "The Price of Freedom", 2025).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from geobasis.o3._spherical_harmonics import spherical_harmonics
from geobasis.o3.layout import check_lmax, num_components

__all__ = ["S2Grid", "s2_grid", "to_grid", "from_grid"]


def s2_grid(res_beta: int, res_alpha: int) -> tuple[Tensor, Tensor]:
    """Grid points ``[res_beta * res_alpha, 3]`` and quadrature weights (float64).

    Points are ordered beta-major (``index = i_beta * res_alpha + i_alpha``); the weights
    sum to :math:`4\\pi`.
    """
    if res_beta < 1 or res_alpha < 1:
        raise ValueError(f"res_beta and res_alpha must be >= 1, got {res_beta}, {res_alpha}")
    nodes, gl_weights = np.polynomial.legendre.leggauss(res_beta)
    alpha = 2 * math.pi * np.arange(res_alpha) / res_alpha
    cos_b = nodes[:, None]
    sin_b = np.sqrt(np.clip(1 - cos_b**2, 0, None))
    x = sin_b * np.sin(alpha)[None, :]
    z = sin_b * np.cos(alpha)[None, :]
    y = np.broadcast_to(cos_b, x.shape)
    points = np.stack([x, y, z], -1).reshape(-1, 3)
    weights = np.repeat(gl_weights * (2 * math.pi / res_alpha), res_alpha)
    return torch.from_numpy(points.copy()), torch.from_numpy(weights.copy())


class S2Grid(nn.Module):
    r"""A Gauss–Legendre x uniform grid with the harmonics of degrees ``0..lmax`` on it.

    Args:
        lmax: band limit of the signals.
        res_beta: polar nodes (default ``lmax + 1``, the least that makes the round
            trip exact).
        res_alpha: azimuths (default ``2 lmax + 1``).

    Buffers: ``points [G, 3]``, ``weights [G]`` and ``harmonics [G, (lmax+1)**2]``
    (orthonormal).

    Shapes: :meth:`to_grid` maps ``[..., (lmax+1)**2, C]`` to ``[..., G, C]`` and
    :meth:`from_grid` maps back; ``G = res_beta * res_alpha``.
    """

    def __init__(
        self, lmax: int, res_beta: int | None = None, res_alpha: int | None = None
    ) -> None:
        super().__init__()
        check_lmax(lmax)
        self.lmax = lmax
        self.res_beta = lmax + 1 if res_beta is None else int(res_beta)
        self.res_alpha = 2 * lmax + 1 if res_alpha is None else int(res_alpha)
        points, weights = s2_grid(self.res_beta, self.res_alpha)
        harmonics = spherical_harmonics(lmax, points)
        self.register_buffer("points", points, persistent=False)
        self.register_buffer("weights", weights, persistent=False)
        self.register_buffer("harmonics", harmonics, persistent=False)
        self.register_buffer("weighted_harmonics", harmonics * weights[:, None], persistent=False)

    def _check(self, x: Tensor, size: int, what: str) -> None:
        if x.dim() < 2 or x.shape[-2] != size:
            raise ValueError(
                f"{what} must have shape [..., {size}, C] for this grid, got {tuple(x.shape)}"
            )

    def to_grid(self, x: Tensor) -> Tensor:
        """Evaluate ``x [..., (lmax+1)**2, C]`` at the grid points: ``[..., G, C]``."""
        self._check(x, num_components(self.lmax), "x")
        return torch.matmul(self.harmonics.to(x.dtype), x)

    def from_grid(self, f: Tensor) -> Tensor:
        """Project grid values ``f [..., G, C]`` on degrees ``0..lmax`` (``[..., D, C]``)."""
        self._check(f, self.points.shape[0], "f")
        return torch.matmul(self.weighted_harmonics.to(f.dtype).t(), f)

    def extra_repr(self) -> str:
        return f"lmax={self.lmax}, res_beta={self.res_beta}, res_alpha={self.res_alpha}"


@lru_cache(maxsize=32)
def _grid(lmax: int, res_beta: int | None, res_alpha: int | None, device: torch.device) -> S2Grid:
    return S2Grid(lmax, res_beta, res_alpha).to(device)


def to_grid(
    x: Tensor, lmax: int | None = None, res_beta: int | None = None, res_alpha: int | None = None
) -> Tensor:
    """Functional :meth:`S2Grid.to_grid` with a cached grid.

    ``lmax`` defaults to the band limit of ``x`` (``x.shape[-2] == (lmax+1)**2``); pass
    ``res_beta``/``res_alpha`` to evaluate signals of different band limits on one grid.
    """
    if lmax is None:
        if x.dim() < 2 or math.isqrt(x.shape[-2]) ** 2 != x.shape[-2]:
            raise ValueError(f"x must have shape [..., (lmax+1)**2, C], got {tuple(x.shape)}")
        lmax = math.isqrt(x.shape[-2]) - 1
    return _grid(lmax, res_beta, res_alpha, x.device).to_grid(x)


def from_grid(
    f: Tensor, lmax: int, res_beta: int | None = None, res_alpha: int | None = None
) -> Tensor:
    """Functional :meth:`S2Grid.from_grid` with a cached grid."""
    return _grid(lmax, res_beta, res_alpha, f.device).from_grid(f)
