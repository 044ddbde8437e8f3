r"""Equivariant normalisation: RMS over components and channels, per degree.

.. math::

    y_{l m c} = \gamma_{l c}\, \frac{x_{l m c}}{\sqrt{\frac{1}{(2l+1) C}
        \sum_{m c'} x_{l m c'}^2 + \epsilon}}

The denominator is invariant (a norm of each degree block), so the layer commutes with
every rotation and reflection.  With ``center_scalars`` the scalar block first has its
channel mean removed (as a layer norm would).  Per sample (per node), no batch
statistics, so it behaves the same in training and inference.

Reference: Liao & Smidt, "Equiformer" (ICLR 2023), equivariant layer normalisation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geobasis.o3.layout import check_spherical, degree_slice

__all__ = ["EquivariantRMSNorm"]


class EquivariantRMSNorm(nn.Module):
    """Per-degree RMS normalisation ``[..., (L+1)**2, C] -> [..., (L+1)**2, C]``."""

    def __init__(
        self, lmax: int, channels: int, eps: float = 1e-6, center_scalars: bool = True
    ) -> None:
        super().__init__()
        self.lmax, self.channels, self.eps = lmax, channels, eps
        self.center_scalars = center_scalars
        self.scale = nn.Parameter(torch.ones(lmax + 1, channels))

    def reset_parameters(self) -> None:
        """Unit scales."""
        nn.init.ones_(self.scale)

    def forward(self, x: Tensor) -> Tensor:
        check_spherical(x, self.lmax, self.channels, type(self).__name__)
        if self.center_scalars:
            scalars = x[..., :1, :]
            x = torch.cat([scalars - scalars.mean(-1, keepdim=True), x[..., 1:, :]], dim=-2)
        out = []
        for l in range(self.lmax + 1):
            block = x[..., degree_slice(l), :]
            rms = torch.sqrt(block.square().mean((-2, -1), keepdim=True) + self.eps)
            out.append(block / rms * self.scale[l])
        return torch.cat(out, dim=-2)

    def extra_repr(self) -> str:
        return f"lmax={self.lmax}, channels={self.channels}, eps={self.eps}"
