r"""Smooth cutoff functions that take radial features to zero at the cutoff."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["PolynomialEnvelope", "CosineCutoff"]


class PolynomialEnvelope(nn.Module):
    r"""Polynomial envelope of degree :math:`p`, :math:`u = r / c`:

    .. math::

        f(u) = 1 - \frac{(p+1)(p+2)}{2} u^p + p(p+2) u^{p+1} - \frac{p(p+1)}{2} u^{p+2}

    for :math:`u < 1` and 0 beyond.  :math:`f(0) = 1`, and :math:`f, f', f''` vanish at
    the cutoff, so energies and forces are smooth when atoms cross it.
    Shapes: ``r [...]`` -> ``[...]``.

    Reference: Gasteiger et al., DimeNet (ICLR 2020); the form used by NequIP and MACE.
    """

    def __init__(self, cutoff: float, p: int = 6) -> None:
        super().__init__()
        if not (isinstance(p, int) and p >= 1):
            raise ValueError(f"p must be an int >= 1, got {p!r}")
        if not float(cutoff) > 0:
            raise ValueError(f"cutoff must be positive, got {cutoff!r}")
        self.cutoff = float(cutoff)
        self.p = p

    def forward(self, r: Tensor) -> Tensor:
        p = self.p
        u = (r / self.cutoff).clamp(min=0.0)
        inside = u < 1
        u = torch.where(inside, u, torch.zeros_like(u))
        up = u**p
        value = 1 - (p + 1) * (p + 2) / 2 * up + p * (p + 2) * up * u - p * (p + 1) / 2 * up * u * u
        return torch.where(inside, value, torch.zeros_like(value))

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, p={self.p}"


class CosineCutoff(nn.Module):
    r""":math:`f(r) = \tfrac12 (\cos(\pi r / c) + 1)` for :math:`r < c`, else 0 (Behler 2011).

    Shapes: ``r [...]`` -> ``[...]``.
    """

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        if not float(cutoff) > 0:
            raise ValueError(f"cutoff must be positive, got {cutoff!r}")
        self.cutoff = float(cutoff)

    def forward(self, r: Tensor) -> Tensor:
        value = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1)
        return torch.where(r < self.cutoff, value, torch.zeros_like(value))

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}"
