r"""Equivariant linear layer: channel mixing within each degree.

.. math::

    y_{l m c'} = \frac{1}{\sqrt{C_\text{in}}} \sum_c W^{(l)}_{c c'}\, x_{l m c}
        \;+\; \delta_{l 0}\, b_{c'}

One weight matrix per degree acting on channels only, so it commutes with every Wigner
matrix :math:`D^{(l)}(R)` (Schur's lemma: the most general equivariant linear map between
copies of one irrep); the bias only on the invariant :math:`l = 0` block.  Weights are
standard normal with the :math:`1/\sqrt{C_\text{in}}` factor applied in ``forward``
(e3nn's convention, so outputs stay of unit scale at initialisation).

Shapes: ``x [..., (L+1)**2, C_in]`` -> ``[..., (L+1)**2, C_out]``.

Reference: Thomas et al., "Tensor field networks" (2018); e3nn ``o3.Linear``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from geobasis.o3.layout import check_spherical, degree_slice

__all__ = ["EquivariantLinear"]


class EquivariantLinear(nn.Module):
    """Per-degree channel mixing ``[..., (L+1)**2, C_in] -> [..., (L+1)**2, C_out]``.

    Args:
        lmax: band limit ``L``.
        in_channels, out_channels: channels ``C_in``, ``C_out``.
        bias: learnable bias on the scalars (``l = 0``).
    """

    def __init__(self, lmax: int, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        if lmax < 0 or in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"need lmax >= 0 and positive channels, got lmax={lmax}, "
                f"in_channels={in_channels}, out_channels={out_channels}"
            )
        self.lmax, self.in_channels, self.out_channels = lmax, in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(lmax + 1, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Standard normal weights (scaled by ``1/sqrt(C_in)`` in forward), zero bias."""
        nn.init.normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        check_spherical(x, self.lmax, self.in_channels, type(self).__name__)
        weight = self.weight / math.sqrt(self.in_channels)
        blocks = [torch.matmul(x[..., degree_slice(l), :], weight[l]) for l in range(self.lmax + 1)]
        if self.bias is not None:
            blocks[0] = blocks[0] + self.bias
        return torch.cat(blocks, dim=-2)

    def extra_repr(self) -> str:
        return f"lmax={self.lmax}, {self.in_channels} -> {self.out_channels}"
