r"""Layout and basis conversions: e3nn's flat ``mul_ir`` layout and the textbook basis.

Layouts.  geobasis stores equivariant features as spherical-channel tensors
``[..., (lmax+1)**2, C]`` (degree blocks ``m = -l..l``, channels last).  e3nn stores
``C x 0e + C x 1o + ...`` flat: for each degree a ``[C, 2l+1]`` block, multiplicity
major.  :func:`to_e3nn` / :func:`from_e3nn` convert losslessly.

Bases.  geobasis uses e3nn's real basis (polar axis :math:`y`, no Condon–Shortley
phase).  The textbook real basis has polar axis :math:`z` and the Condon–Shortley phase
:math:`(-1)^m` in :math:`P_l^m`:

.. math::

    Y^{\text{std}}_{lm}(\hat r) = (-1)^m \sqrt{2}\, N_{l|m|} P_l^{|m|}(\cos\theta)
    \begin{cases}\cos m\phi & m > 0\\ \sin |m|\phi & m < 0\end{cases},
    \qquad Y^{\text{std}}_{l0} = N_{l0} P_l(\cos\theta),

with :math:`P_l^m` taken without the phase (so it is positive near the pole) and
:math:`\theta, \phi` the usual angles about :math:`z`.  Since
:math:`Y^{\text{e3nn}}(x, y, z) = Y^{\text{real}}(z, x, y)` (a cyclic permutation of the
axes, a rotation), the two bases differ by a fixed orthogonal matrix per degree, computed
once by exact quadrature; :func:`to_standard` maps coefficients so that
:math:`\sum x_k Y^{\text{e3nn}}_k = \sum x^{\text{std}}_k Y^{\text{std}}_k`.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from geobasis.o3._spherical_harmonics import (
    _plain_evaluate,
    _recurrence_tables,
    degree_scale,
)
from geobasis.o3.layout import check_lmax, degree_slice
from geobasis.o3.s2grid import S2Grid

__all__ = [
    "to_e3nn",
    "from_e3nn",
    "irreps_string",
    "to_standard",
    "from_standard",
    "spherical_harmonics_standard",
]


def _lmax_from_dim(dim: int, name: str = "x") -> int:
    lmax = int(round(dim**0.5)) - 1
    if (lmax + 1) ** 2 != dim:
        raise ValueError(
            f"{name} must have a spherical dimension (lmax+1)**2 at dim -2, got size {dim}"
        )
    return lmax


def irreps_string(lmax: int, channels: int, parity: str = "natural") -> str:
    """e3nn irreps of a spherical-channel tensor, e.g. ``"8x0e+8x1o+8x2e"``.

    ``parity`` is ``"natural"`` (:math:`(-1)^l`, e.g. harmonics) or ``"pseudo"``
    (:math:`(-1)^{l+1}`).
    """
    check_lmax(lmax)
    if parity not in ("natural", "pseudo"):
        raise ValueError(f"parity must be 'natural' or 'pseudo', got {parity!r}")
    flip = parity == "pseudo"
    return "+".join(f"{channels}x{l}{'eo'[(l + flip) % 2]}" for l in range(lmax + 1))


def to_e3nn(x: Tensor) -> Tensor:
    """``[..., (lmax+1)**2, C]`` -> e3nn's flat ``[..., C*(lmax+1)**2]``.

    The irreps of the result are ``irreps_string(lmax, C)``.
    """
    if x.dim() < 2:
        raise ValueError(f"x must have shape [..., (lmax+1)**2, C], got {tuple(x.shape)}")
    lmax = _lmax_from_dim(x.shape[-2])
    blocks = [x[..., degree_slice(l), :].transpose(-1, -2) for l in range(lmax + 1)]
    return torch.cat([b.reshape(*x.shape[:-2], -1) for b in blocks], dim=-1)


def from_e3nn(x: Tensor, irreps) -> Tensor:
    """e3nn flat ``[..., irreps.dim]`` -> ``[..., (lmax+1)**2, C]``.

    ``irreps`` (an ``e3nn.o3.Irreps`` or its string) must hold each degree ``0..lmax``
    once, in order, with one multiplicity ``C`` (any parities).
    """
    entries = _parse_irreps(irreps)
    _check_parity(irreps)
    muls = {mul for mul, _ in entries}
    ls = [l for _, l in entries]
    if ls != list(range(len(ls))) or len(muls) != 1:
        raise ValueError(
            f"irreps must be 'Cx0 + Cx1 + ... + Cxlmax' with one multiplicity, got {irreps!s}"
        )
    (mul,) = muls
    lmax = len(ls) - 1
    if x.shape[-1] != mul * (lmax + 1) ** 2:
        raise ValueError(
            f"x has last dimension {x.shape[-1]}, irreps {irreps!s} need {mul * (lmax + 1) ** 2}"
        )
    out, start = [], 0
    for l in range(lmax + 1):
        size = mul * (2 * l + 1)
        out.append(
            x[..., start : start + size].reshape(*x.shape[:-1], mul, 2 * l + 1).transpose(-1, -2)
        )
        start += size
    return torch.cat(out, dim=-2)


def _check_parity(irreps) -> None:
    """The layout holds one parity rule for all degrees: natural ``(-1)^l`` (``0e+1o+2e``,
    or e3nn's ``y``) or pseudo ``-(-1)^l`` (``0o+1e+2o``); a mix is an error."""
    kinds = set()
    for term in str(irreps).replace(" ", "").split("+"):
        if term:
            l, parity = int(term.rpartition("x")[2][:-1]), term[-1]
            if parity != "y":
                kinds.add("natural" if (parity == "e") == (l % 2 == 0) else "pseudo")
    if len(kinds) > 1:
        raise ValueError(
            f"irreps {irreps!s} mix natural (0e+1o+2e...) and pseudo (0o+1e+2o...) parities; "
            "a spherical-channel tensor holds one of them"
        )


def _parse_irreps(irreps) -> list[tuple[int, int]]:
    if not isinstance(irreps, str):
        irreps = str(irreps)
    entries = []
    for term in irreps.replace(" ", "").split("+"):
        if not term:
            continue
        mul, _, ir = term.rpartition("x")
        if not ir or ir[-1] not in "eoy" or not ir[:-1].isdigit():
            raise ValueError(f"cannot parse irreps term {term!r} in {irreps!r}")
        entries.append((int(mul) if mul else 1, int(ir[:-1])))
    return entries


@lru_cache(maxsize=32)
def _standard_tables(
    lmax: int, normalization: str, dtype: torch.dtype, device: torch.device
) -> tuple[dict, Tensor]:
    """Recurrence tables (orthonormal) and the per-component factor: CS phase x normalisation."""
    edges, tables = _recurrence_tables(lmax, "integral")
    tables = {k: v.to(device=device, dtype=dtype) for k, v in tables.items()}
    tables["edge"] = edges
    factor = torch.tensor(
        [
            (-1.0) ** abs(m) * degree_scale(l, normalization)
            for l in range(lmax + 1)
            for m in range(-l, l + 1)
        ],
        dtype=dtype,
        device=device,
    )
    return tables, factor


def spherical_harmonics_standard(
    lmax: int, vectors: Tensor, normalization: str = "integral"
) -> Tensor:
    """Textbook real harmonics (z polar, Condon–Shortley phase) ``[..., (lmax+1)**2]``."""
    check_lmax(lmax)
    degree_scale(0, normalization)  # validates the name
    tables, factor = _standard_tables(lmax, normalization, vectors.dtype, vectors.device)
    flat = torch.nn.functional.normalize(vectors.reshape(-1, 3), dim=-1)
    r2 = (flat * flat).sum(-1)
    cuw = flat.t()[[2, 0, 1]]  # polar z, azimuth from x towards y
    y = _plain_evaluate(lmax, cuw, tables, r2).t() * factor
    return y.reshape(*vectors.shape[:-1], -1)


@lru_cache(maxsize=16)
def _basis_change(lmax: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Block-diagonal ``T`` with ``x_std = T @ x_e3nn`` (orthogonal)."""
    grid = S2Grid(lmax, lmax + 1, 2 * lmax + 1)
    std = spherical_harmonics_standard(lmax, grid.points)
    full = std.t() @ grid.weighted_harmonics  # <Y_std_j, Y_e3nn_k>
    mask = torch.zeros_like(full)
    for l in range(lmax + 1):
        mask[degree_slice(l), degree_slice(l)] = 1
    return (full * mask).to(device=device, dtype=dtype)


def to_standard(x: Tensor) -> Tensor:
    """Coefficients ``[..., (lmax+1)**2, C]`` in e3nn's basis -> textbook basis (same function)."""
    lmax = _lmax_from_dim(x.shape[-2]) if x.dim() >= 2 else _lmax_from_dim(-1)
    return torch.matmul(_basis_change(lmax, x.dtype, x.device), x)


def from_standard(x: Tensor) -> Tensor:
    """Inverse of :func:`to_standard`."""
    lmax = _lmax_from_dim(x.shape[-2]) if x.dim() >= 2 else _lmax_from_dim(-1)
    return torch.matmul(_basis_change(lmax, x.dtype, x.device).t(), x)
