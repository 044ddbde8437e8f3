r"""The spherical-channel layout: degree blocks, their slices and indices, and checks.

Equivariant features in geobasis are tensors of shape ``[..., (L+1)**2, C]``: every degree
:math:`l = 0 \dots L` is one contiguous block of :math:`2l+1` components ordered
:math:`m = -l \dots l` (e3nn's order), channels last.  Degree :math:`l` occupies rows

.. math::

    l^2 \le k < (l+1)^2, \qquad l(k) = \lfloor \sqrt{k} \rfloor, \qquad
    m(k) = k - l(k)\,(l(k) + 1).

Every module that slices degrees uses these helpers, so the layout is written down once.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "num_components",
    "degree_slice",
    "degree_index",
    "check_lmax",
    "check_spherical",
]


def num_components(lmax: int) -> int:
    """``(lmax+1)**2``: the rows of a spherical-channel tensor of band limit ``lmax``."""
    return (lmax + 1) ** 2


def degree_slice(l: int) -> slice:
    """``slice(l*l, (l+1)**2)``: the rows of degree ``l``."""
    return slice(l * l, (l + 1) ** 2)


def degree_index(lmax: int, device: torch.device | str | None = None) -> Tensor:
    """``[(lmax+1)**2]`` long tensor holding the degree ``l`` of every row."""
    counts = torch.arange(lmax + 1, device=device) * 2 + 1
    return torch.repeat_interleave(torch.arange(lmax + 1, device=device), counts)


def check_lmax(lmax: int, name: str = "lmax") -> None:
    """Raise a clear error unless ``lmax`` is a non-negative int."""
    if not isinstance(lmax, int) or isinstance(lmax, bool) or lmax < 0:
        raise ValueError(f"{name} must be a non-negative int, got {lmax!r}")


def check_spherical(x: Tensor, lmax: int, channels: int, name: str) -> None:
    """Raise a clear error unless ``x`` is ``[..., (lmax+1)**2, channels]``.

    ``name`` (the calling module) starts the message.
    """
    dim = num_components(lmax)
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: x must be a tensor [..., {dim}, {channels}], got {type(x)}")
    if x.dim() < 2 or x.shape[-2] != dim or x.shape[-1] != channels:
        raise ValueError(
            f"{name}: expected x of shape [..., {dim}, {channels}] (lmax={lmax}, "
            f"channels={channels}), got {tuple(x.shape)}"
        )
