r"""Gaunt product through 2-D Fourier coefficients and FFTs (Luo et al., 2024).

"Enabling Efficient Equivariant Operations in the Fourier Basis via Gaunt Tensor
Products" (ICLR 2024) observes that a spherical function of degree :math:`\le L`, written
in the polar angle :math:`\beta` and azimuth :math:`\alpha` and extended to the torus
:math:`[0, 2\pi)^2`, is a 2-D trigonometric polynomial

.. math::

    \sum_{l m} x_{lm} Y_l^m(\beta, \alpha) = \sum_{|u|, |v| \le L} F_{uv}\,
    e^{i (u \beta + v \alpha)}, \qquad F_{uv} = \sum_{l \ge |v|} y^{l}_{u v}\, x_{l, \pm v},

whose coefficients couple only :math:`m = \pm v` (a sparse change of basis, :math:`O(L^3)`
per channel).  The product of two such functions is the 2-D convolution of their
coefficients, done with FFTs on a torus grid of :math:`(2(L_1+L_2)+1) \times
(L_1+L_2+L_{out}+1)` points, and the result returns to spherical harmonics through

.. math::

    y_{lm} = \sum_{u v} P_{uv}\, z^{lm}_{uv}, \qquad
    z^{lm}_{uv} = \int_0^{\pi}\!\!\int_0^{2\pi} e^{i(u\beta + v\alpha)} Y_l^m \sin\beta\,
    d\alpha\, d\beta = 2\pi \sum_{u'} y^{l}_{u', -v}\, I(u + u'),

with :math:`I(k) = \int_0^\pi e^{ik\beta}\sin\beta\, d\beta` (:math:`2/(1-k^2)` for even
:math:`k`, :math:`\pm i\pi/2` for :math:`k = \pm 1`, else 0); again only :math:`v = \pm m`
contributes.  The coefficients :math:`y` are exact: they are read off an FFT of the
harmonics sampled on a :math:`(2L+1)^2` torus grid.  Only the half spectrum
:math:`v \ge 0` is stored (the functions are real).  The result is exact and equals
:class:`~geobasis.products.GauntGridProduct`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from geobasis.o3 import spherical_harmonics
from geobasis.o3.layout import degree_slice
from geobasis.products._gaunt import GauntProduct

__all__ = ["GauntFourierProduct", "sh_to_fourier"]


@lru_cache(maxsize=64)
def sh_to_fourier(lmax: int) -> np.ndarray:
    r"""Exact torus Fourier coefficients of the harmonics: ``[2L+1 (u), 2L+1 (v), (L+1)**2]``.

    ``out[u mod N, v mod N, d]`` (``N = 2L+1``) is the coefficient of
    :math:`e^{i(u\beta + v\alpha)}` in :math:`Y_d(\beta, \alpha)` with the point
    :math:`(\sin\beta \sin\alpha, \cos\beta, \sin\beta \cos\alpha)` (polar axis ``y``).
    Complex128; zero unless :math:`v = \pm m_d`.
    """
    n = 2 * lmax + 1
    angles = 2 * math.pi * np.arange(n) / n
    beta, alpha = np.meshgrid(angles, angles, indexing="ij")
    points = np.stack(
        [np.sin(beta) * np.sin(alpha), np.cos(beta), np.sin(beta) * np.cos(alpha)], -1
    )
    values = spherical_harmonics(lmax, torch.from_numpy(points.reshape(-1, 3))).numpy()
    coefficients = np.fft.fft2(values.reshape(n, n, -1), axes=(0, 1)) / (n * n)
    coefficients[np.abs(coefficients) < 1e-13] = 0
    return coefficients


def _sin_integral(k: np.ndarray) -> np.ndarray:
    r""":math:`\int_0^\pi e^{ik\beta} \sin\beta\, d\beta` for integer ``k``."""
    out = np.zeros(k.shape, dtype=np.complex128)
    even = k % 2 == 0
    out[even] = 2 / (1 - k[even].astype(np.float64) ** 2)
    out[k == 1] = 0.5j * math.pi
    out[k == -1] = -0.5j * math.pi
    return out


def _fft_size(n: int) -> int:
    """Smallest ``m >= n`` with no prime factor above 5 (fast FFT sizes)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def _m_of_components(lmax: int) -> list[tuple[int, int]]:
    return [(l, m) for l in range(lmax + 1) for m in range(-l, l + 1)]


def _slots(lmax: int) -> tuple[np.ndarray, int]:
    """``index[v, slot]``: component with ``|m| = v`` in each slot (``(L+1)**2`` = padding)."""
    width = 2 * (lmax + 1)
    index = np.full((lmax + 1, width), (lmax + 1) ** 2, dtype=np.int64)
    fill = [0] * (lmax + 1)
    for d, (_, m) in enumerate(_m_of_components(lmax)):
        v = abs(m)
        index[v, fill[v]] = d
        fill[v] += 1
    return index, width


def _analysis_table(lmax: int, res_beta: int) -> tuple[np.ndarray, np.ndarray]:
    """Real table ``[L+1, 2*res_beta, width]``: components with ``|m| = v`` -> (Re, Im) F[:, v]."""
    coefficients = sh_to_fourier(lmax)
    n = 2 * lmax + 1
    index, width = _slots(lmax)
    table = np.zeros((lmax + 1, 2, res_beta, width))
    for v in range(lmax + 1):
        for slot, d in enumerate(index[v]):
            if d == (lmax + 1) ** 2:
                continue
            for u in range(-lmax, lmax + 1):
                c = coefficients[u % n, v, d]
                table[v, 0, u % res_beta, slot] = c.real
                table[v, 1, u % res_beta, slot] = c.imag
    return table.reshape(lmax + 1, 2 * res_beta, width), index


def _synthesis_table(lmax: int, umax: int, res_beta: int) -> tuple[np.ndarray, np.ndarray]:
    """Real table ``[L+1, width, 2*res_beta]``: (Re, Im) P[:, v] -> components with |m| = v."""
    coefficients = sh_to_fourier(lmax)
    n = 2 * lmax + 1
    index, width = _slots(lmax)
    table = np.zeros((lmax + 1, width, 2, res_beta))
    u_out = np.arange(-umax, umax + 1)
    u_in = np.arange(-lmax, lmax + 1)
    kernel = 2 * math.pi * _sin_integral(u_out[:, None] + u_in[None, :])  # [U_out, U_in]
    for v in range(lmax + 1):
        # Re sum_{+-v} = Re P(v) Z(v) + Re P(-v) Z(-v) = 2 Re P(v) Z(v) for v > 0
        factor = 1.0 if v == 0 else 2.0
        for slot, d in enumerate(index[v]):
            if d == (lmax + 1) ** 2:
                continue
            z = kernel @ coefficients[u_in % n, (-v) % n, d]  # [U_out]
            table[v, slot, 0, u_out % res_beta] = factor * z.real
            table[v, slot, 1, u_out % res_beta] = -factor * z.imag
    return table.reshape(lmax + 1, width, 2 * res_beta), index


class GauntFourierProduct(GauntProduct):
    r"""Pointwise product of two spherical functions through 2-D FFTs, :math:`O(L^3)`.

    Same arguments, weights and shapes as :class:`~geobasis.products.GauntGridProduct`,
    and the same result (exact for every band limit).

    Args:
        lmax1, lmax2, lmax_out: band limits of ``x1``, ``x2`` and the output.
        channels: number of channels ``C`` (needed for weights).
        weights: ``"internal"``, ``"external"`` or ``"none"`` (per-degree weights
            ``[L1+L2+L_out+3, C]``, see :mod:`geobasis.products._gaunt`).
    """

    def __init__(
        self,
        lmax1: int,
        lmax2: int,
        lmax_out: int,
        channels: int | None = None,
        weights: str = "internal",
    ) -> None:
        super().__init__(lmax1, lmax2, lmax_out, channels, weights)
        umax = lmax1 + lmax2
        # every product frequency |u| <= L1 + L2 without aliasing; |v| <= L_out must not
        # alias with |v| <= L1 + L2, and the inputs must fit the half spectrum
        self.res_beta = _fft_size(2 * umax + 1)
        self.res_alpha = _fft_size(max(umax + lmax_out + 1, 2 * lmax1 + 1, 2 * lmax2 + 1))
        dtype = torch.get_default_dtype()
        for name, lmax in (("1", lmax1), ("2", lmax2)):
            table, index = _analysis_table(lmax, self.res_beta)
            self.register_table(f"_analysis{name}", torch.from_numpy(table))
            self.register_buffer(f"_slots{name}", torch.from_numpy(index.reshape(-1)), False)
        table, index = _synthesis_table(lmax_out, umax, self.res_beta)
        self.register_table("_synthesis", torch.from_numpy(table))
        # position of every output component in the flattened [v, slot] result
        position = np.zeros(self.dim_out, dtype=np.int64)
        for flat, d in enumerate(index.reshape(-1)):
            if d < self.dim_out:
                position[d] = flat
        self.register_buffer("_positions", torch.from_numpy(position), False)
        degree_mask = torch.zeros(self.dim2, lmax2 + 1, dtype=dtype)
        for l in range(lmax2 + 1):
            degree_mask[degree_slice(l), l] = 1
        self.register_buffer("_degree_mask", degree_mask, False)
        self.chunk_size: int | None = None  # CPU blocks of 128 (cpu_batch_chunk)

    def _to_torus(self, x: Tensor, which: str) -> Tensor:
        """``x [B, D, C]`` -> values ``[B, C, res_beta, res_alpha]`` on the torus grid."""
        batch, _, channels = x.shape
        table = getattr(self, f"_analysis{which}")  # [V, 2 Mb, width]
        slots = getattr(self, f"_slots{which}")
        num_v, width = table.shape[0], table.shape[2]
        padded = torch.cat([x, x.new_zeros(batch, 1, channels)], dim=1)
        grouped = padded.index_select(1, slots).view(batch, num_v, width, channels)
        grouped = grouped.permute(1, 2, 0, 3).reshape(num_v, width, batch * channels)
        half = torch.matmul(table, grouped)  # [V, 2 Mb, B C]
        half = half.view(num_v, 2, self.res_beta, batch, channels).permute(3, 4, 2, 0, 1)
        spectrum = x.new_zeros(batch, channels, self.res_beta, self.res_alpha // 2 + 1, 2)
        spectrum[:, :, :, :num_v] = half
        return torch.fft.irfft2(
            torch.view_as_complex(spectrum), s=(self.res_beta, self.res_alpha), norm="forward"
        )

    def _from_torus(self, f: Tensor) -> Tensor:
        """Torus values ``[B, C, res_beta, res_alpha]`` -> ``[B, D_out, C]``."""
        batch, channels = f.shape[0], f.shape[1]
        num_v = self.lmax_out + 1
        spectrum = torch.fft.rfft2(f, norm="forward")[..., :num_v]  # [B, C, Mb, V]
        parts = torch.view_as_real(spectrum).permute(3, 4, 2, 0, 1)  # [V, 2, Mb, B, C]
        parts = parts.reshape(num_v, 2 * self.res_beta, batch * channels)
        out = torch.matmul(self._synthesis, parts)  # [V, width, B C]
        out = out.reshape(-1, batch, channels).index_select(0, self._positions)
        return out.permute(1, 0, 2)  # [B, D_out, C]

    def _product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        return self._chunked_plain_product(x1, x2, weight)

    def _plain_product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        if weight is None:
            w2 = w_out = None
        else:
            w1, w2, w_out = self.split_weight(weight)
            x1 = x1 * w1
        f1 = self._to_torus(x1, "1")  # [B, C, Mb, Ma]
        if x2.dim() == 3:
            f2 = self._to_torus(x2 if w2 is None else x2 * w2, "2")
        elif w2 is None:
            f2 = self._to_torus(x2.unsqueeze(-1), "2")  # [B, 1, Mb, Ma]
        else:
            # one channel-free torus function per degree of x2, mixed by the degree weights
            per_degree = self._to_torus(x2.unsqueeze(-1) * self._degree_mask, "2")
            degree_weights = weight[:, self.lmax1 + 1 : self.lmax1 + self.lmax2 + 2]
            f2 = torch.matmul(degree_weights.transpose(1, 2), per_degree.flatten(2))
            f2 = f2.view_as(f1) if f2.shape[0] == f1.shape[0] else f2.view(-1, *f1.shape[1:])
        out = self._from_torus(f1 * f2)
        return out if w_out is None else out * w_out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", torus={self.res_beta}x{self.res_alpha}"
