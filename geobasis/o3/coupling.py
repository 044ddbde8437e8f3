r"""Coupling coefficients of real spherical harmonics: Clebsch–Gordan and Gaunt.

Both are built from the exact complex Clebsch–Gordan coefficients (Racah's formula,
evaluated in rational arithmetic) and the unitary change of basis from complex
(Condon–Shortley) to real harmonics.  The real-basis tensors are the same in e3nn's
basis (polar axis y) and in the z-polar real basis, because the two are related by a
rotation and the coupling tensors are rotation invariant.

* :func:`clebsch_gordan` :math:`C^{l_3}_{l_1 l_2}[m_1, m_2, m_3]` couples
  :math:`l_1 \otimes l_2 \to l_3` isometrically:
  :math:`\sum_{m_1 m_2} C[m_1, m_2, m_3] C[m_1, m_2, m_3'] = \delta_{m_3 m_3'}`,
  so :math:`C = \sqrt{2 l_3 + 1}\ \text{e3nn.o3.wigner\_3j}(l_1, l_2, l_3)`
  (same sign).  It is nonzero for every :math:`|l_1 - l_2| \le l_3 \le l_1 + l_2`,
  including odd :math:`l_1 + l_2 + l_3` (antisymmetric, cross-product-like paths).
* :func:`gaunt` :math:`G[m_1, m_2, m_3] = \int_{S^2} Y_{l_1}^{m_1} Y_{l_2}^{m_2}
  Y_{l_3}^{m_3}\, d\Omega` (orthonormal harmonics); zero unless :math:`l_1+l_2+l_3` is
  even.  :math:`G = \sqrt{\frac{(2l_1+1)(2l_2+1)}{4\pi(2l_3+1)}}\,
  \langle l_1 0 l_2 0 | l_3 0\rangle\, \epsilon\, C` with a sign
  :math:`\epsilon = \pm 1` fixed by e3nn's phase convention.

References: Racah, "Theory of complex spectra II" (1942); Homeier & Steinborn, "Some
properties of the coupling coefficients of real spherical harmonics" (1996).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from torch import Tensor

from geobasis.o3.layout import check_lmax

__all__ = [
    "clebsch_gordan",
    "gaunt",
    "gaunt_factor",
    "complex_clebsch_gordan",
    "real_to_complex",
    "coupling_paths",
]


def _triangle(l1: int, l2: int, l3: int) -> bool:
    return abs(l1 - l2) <= l3 <= l1 + l2


@cache
def _cg_complex_value(j1: int, m1: int, j2: int, m2: int, j: int, m: int) -> float:
    """<j1 m1 j2 m2 | j m> by Racah's formula in exact integer arithmetic (integer spins).

    The alternating sum is accumulated as one integer over a common denominator, so the
    only rounding is the final conversion to float (no cancellation error at high l).
    """
    if m1 + m2 != m or not _triangle(j1, j2, j) or abs(m1) > j1 or abs(m2) > j2 or abs(m) > j:
        return 0.0
    f = _factorial
    # squared prefactor as an exact ratio of integers
    pre_num = (2 * j + 1) * f(j + j1 - j2) * f(j - j1 + j2) * f(j1 + j2 - j)
    pre_num *= f(j + m) * f(j - m) * f(j1 - m1) * f(j1 + m1) * f(j2 - m2) * f(j2 + m2)
    pre_den = f(j1 + j2 + j + 1)
    k_min = max(0, j2 - j - m1, j1 + m2 - j)
    k_max = min(j1 + j2 - j, j1 - m1, j2 + m2)
    # every factorial of the denominator divides the same factorial at its largest argument
    common = f(k_max) * f(j1 + j2 - j - k_min) * f(j1 - m1 - k_min) * f(j2 + m2 - k_min)
    common *= f(j - j2 + m1 + k_max) * f(j - j1 - m2 + k_max)
    total = 0
    for k in range(k_min, k_max + 1):
        den = f(k) * f(j1 + j2 - j - k) * f(j1 - m1 - k) * f(j2 + m2 - k)
        den *= f(j - j2 + m1 + k) * f(j - j1 - m2 + k)
        total += (-1) ** k * (common // den)
    if total == 0:
        return 0.0
    # int / int is correctly rounded, so the value carries a single rounding error
    value = math.sqrt((pre_num * total * total) / (pre_den * common * common))
    return value if total > 0 else -value


@cache
def _factorial(n: int) -> int:
    return math.factorial(n)


@cache
def _complex_cg(l1: int, l2: int, l3: int) -> np.ndarray:
    out = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    flip = (-1) ** (l1 + l2 - l3)  # <l1 -m1 l2 -m2 | l3 -m3> = flip <l1 m1 l2 m2 | l3 m3>
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            m3 = m1 + m2
            if 0 <= m3 <= l3:
                value = _cg_complex_value(l1, m1, l2, m2, l3, m3)
                out[m1 + l1, m2 + l2, m3 + l3] = value
                out[l1 - m1, l2 - m2, l3 - m3] = flip * value
    return out


@cache
def _real_to_complex(l: int) -> np.ndarray:
    r"""Unitary ``U`` with ``Y_real = U @ Y_complex`` (Condon–Shortley complex harmonics).

    .. math::

        Y_{l,m>0} = \tfrac{1}{\sqrt 2}\big((-1)^m Y_l^m + Y_l^{-m}\big), \quad
        Y_{l,m<0} = \tfrac{i}{\sqrt 2}\big(Y_l^{-|m|} - (-1)^{m} Y_l^{|m|}\big).
    """
    u = np.zeros((2 * l + 1, 2 * l + 1), dtype=np.complex128)
    s = 1 / math.sqrt(2)
    u[l, l] = 1
    for m in range(1, l + 1):
        u[l + m, l + m] = (-1) ** m * s
        u[l + m, l - m] = s
        u[l - m, l - m] = 1j * s
        u[l - m, l + m] = -1j * (-1) ** m * s
    return u


@cache
def _real_coupling(l1: int, l2: int, l3: int) -> np.ndarray:
    """Isometric real coupling tensor (float64), signed as e3nn's ``wigner_3j``."""
    u1, u2, u3 = _real_to_complex(l1), _real_to_complex(l2), _real_to_complex(l3)
    c = np.einsum("ai,bj,ck,ijk->abc", u1, u2, u3.conj(), _complex_cg(l1, l2, l3), optimize=True)
    # i^(l1+l2-l3) is e3nn's phase: it makes every path real, odd ones included
    c = c * 1j ** (l1 + l2 - l3)
    assert np.abs(c.imag).max(initial=0.0) < 1e-12
    return np.ascontiguousarray(c.real)


def _check_triplet(l1: int, l2: int, l3: int) -> None:
    for name, l in (("l1", l1), ("l2", l2), ("l3", l3)):
        check_lmax(l, name)


def clebsch_gordan(
    l1: int,
    l2: int,
    l3: int,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Real Clebsch–Gordan tensor ``[2l1+1, 2l2+1, 2l3+1]`` in e3nn's basis.

    Isometric (:math:`\|C\|_F^2 = 2l_3 + 1`); equal to
    ``sqrt(2*l3+1) * e3nn.o3.wigner_3j(l1, l2, l3)``.  Equivariant:
    :math:`\sum D_{l_1}(R)_{aa'} D_{l_2}(R)_{bb'} C_{a'b'c} = \sum_{c'} C_{abc'} D_{l_3}(R)_{c'c}`.
    Zero tensor when the triangle condition fails.
    """
    _check_triplet(l1, l2, l3)
    if not _triangle(l1, l2, l3):
        return torch.zeros(
            2 * l1 + 1,
            2 * l2 + 1,
            2 * l3 + 1,
            dtype=dtype or torch.get_default_dtype(),
            device=device,
        )
    c = torch.from_numpy(_real_coupling(l1, l2, l3))
    return c.to(dtype=dtype or torch.get_default_dtype(), device=device)


def gaunt(
    l1: int,
    l2: int,
    l3: int,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Real Gaunt tensor :math:`\int Y_{l_1}^{m_1} Y_{l_2}^{m_2} Y_{l_3}^{m_3} d\Omega`.

    Shape ``[2l1+1, 2l2+1, 2l3+1]``.

    For orthonormal ("integral") harmonics; zero unless ``l1 + l2 + l3`` is even and the
    triangle condition holds.  So :math:`Y_{l_1}^{a} Y_{l_2}^{b} = \sum_{l_3 c} G_{abc}
    Y_{l_3}^{c}`.
    """
    _check_triplet(l1, l2, l3)
    dtype = dtype or torch.get_default_dtype()
    factor = gaunt_factor(l1, l2, l3)
    if factor == 0.0:
        return torch.zeros(2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1, dtype=dtype, device=device)
    return torch.from_numpy(_real_coupling(l1, l2, l3) * factor).to(dtype=dtype, device=device)


def gaunt_factor(l1: int, l2: int, l3: int) -> float:
    r"""The scalar :math:`g` with ``gaunt(l1, l2, l3) == g * clebsch_gordan(l1, l2, l3)``.

    .. math::

        g = (-1)^{(l_1+l_2-l_3)/2} \sqrt{\frac{(2l_1+1)(2l_2+1)}{4\pi(2l_3+1)}}\,
        \langle l_1 0\, l_2 0 | l_3 0 \rangle

    for even :math:`l_1+l_2+l_3` inside the triangle, else 0.  These are the path weights
    that turn a Clebsch–Gordan product into a Gaunt product.
    """
    _check_triplet(l1, l2, l3)
    if not _triangle(l1, l2, l3) or (l1 + l2 + l3) % 2:
        return 0.0
    k = math.sqrt((2 * l1 + 1) * (2 * l2 + 1) / (4 * math.pi * (2 * l3 + 1)))
    k *= _cg_complex_value(l1, 0, l2, 0, l3, 0)
    # undo the phase i^(l1+l2-l3) = (-1)^((l1+l2-l3)/2) of even paths
    return k * (-1) ** ((l1 + l2 - l3) // 2)


def complex_clebsch_gordan(l1: int, l2: int, l3: int) -> Tensor:
    r"""Complex :math:`\langle l_1 m_1 l_2 m_2 | l_3 m_3\rangle` (Condon–Shortley), float64."""
    _check_triplet(l1, l2, l3)
    return torch.from_numpy(_complex_cg(l1, l2, l3).copy())


def real_to_complex(l: int) -> Tensor:
    """The unitary ``U [2l+1, 2l+1]`` (complex128) with ``Y_real = U @ Y_complex``."""
    check_lmax(l, "l")
    return torch.from_numpy(_real_to_complex(l).copy())


_PATH_SETS = ("all", "even", "odd")


def coupling_paths(
    lmax1: int, lmax2: int, lmax_out: int, paths: str = "all"
) -> list[tuple[int, int, int]]:
    """All ``(l1, l2, l)`` with ``|l1-l2| <= l <= l1+l2`` within the band limits.

    Ordered by output degree ``l``, then ``l1``, then ``l2``, so the paths into one output
    degree, and among them those from one input degree, are contiguous.

    ``paths="even"`` keeps even ``l1+l2+l`` (natural parity, the Gaunt paths), ``"odd"`` the
    others.
    """
    if paths not in _PATH_SETS:
        raise ValueError(f"paths must be one of {_PATH_SETS}, got {paths!r}")
    out = []
    for l in range(lmax_out + 1):
        for l1 in range(lmax1 + 1):
            for l2 in range(abs(l - l1), min(l + l1, lmax2) + 1):
                odd = (l1 + l2 + l) % 2 == 1
                if paths == "all" or (paths == "odd") == odd:
                    out.append((l1, l2, l))
    return out
