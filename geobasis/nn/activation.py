r"""Equivariant nonlinearities for spherical-channel tensors.

* :class:`Gate`: scalars go through an activation, every higher degree is scaled by a
  sigmoid of invariant gate values computed from the scalars,

  .. math::

      y_{0 c} = \sigma(x_{0 c}), \qquad
      y_{l m c} = x_{l m c}\, \text{sigmoid}\Big(\sum_{c'} G^{(l)}_{c' c}\, x_{0 c'}
          / \sqrt{C} + g^{(l)}_c\Big) \quad (l \ge 1).

  Exactly equivariant (invariant factors times equivariant blocks).
  Reference: Weiler et al., "3D Steerable CNNs" (NeurIPS 2018); e3nn ``nn.Gate``.

* :class:`S2Activation`: evaluate the signal on an S² quadrature grid, apply the
  activation pointwise, project back on degrees :math:`0..L`.  The pointwise activation
  creates degrees above any band limit, so the projection aliases and equivariance is
  approximate; the error falls as the grid is refined (``resolution``) and is measured
  in the tests.  Reference: Cohen et al., "Spherical CNNs" (ICLR 2018); Passaro &
  Zitnick, eSCN (ICML 2023).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from geobasis.o3 import S2Grid
from geobasis.o3.layout import check_spherical, degree_slice, num_components

__all__ = ["Gate", "S2Activation", "NONLINEARITIES", "make_nonlinearity"]

#: nonlinearities by name (the ``nonlinearity`` option of the models)
NONLINEARITIES = ("gate", "s2")


class Gate(nn.Module):
    """Gated nonlinearity ``[..., (L+1)**2, C] -> [..., (L+1)**2, C]``.

    Args:
        lmax: band limit ``L``.
        channels: channels ``C`` (the same for every degree).
        activation: applied to the scalars (default SiLU).
    """

    def __init__(
        self, lmax: int, channels: int, activation: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        super().__init__()
        self.lmax, self.channels = lmax, channels
        self.activation = activation if activation is not None else nn.SiLU()
        self.gate_weight = nn.Parameter(torch.empty(channels, lmax * channels))
        self.gate_bias = nn.Parameter(torch.empty(lmax * channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Standard normal gate weights (scaled by ``1/sqrt(C)`` in forward), zero bias."""
        nn.init.normal_(self.gate_weight)
        nn.init.zeros_(self.gate_bias)

    def forward(self, x: Tensor) -> Tensor:
        check_spherical(x, self.lmax, self.channels, type(self).__name__)
        scalars = x[..., 0, :]
        out = [self.activation(scalars)[..., None, :]]
        if self.lmax > 0:
            gates = scalars @ self.gate_weight / math.sqrt(self.channels) + self.gate_bias
            gates = torch.sigmoid(gates).unflatten(-1, (self.lmax, self.channels))
            for l in range(1, self.lmax + 1):
                out.append(x[..., degree_slice(l), :] * gates[..., l - 1 : l, :])
        return torch.cat(out, dim=-2)

    def extra_repr(self) -> str:
        return f"lmax={self.lmax}, channels={self.channels}"


class S2Activation(nn.Module):
    """Pointwise activation on an S² grid, ``[..., (L+1)**2, C] -> [..., (L+1)**2, C]``.

    Args:
        lmax: band limit ``L``.
        activation: pointwise function (default SiLU).
        resolution: the grid integrates degree ``resolution * L`` exactly (default 4:
            products up to fourth order are projected without aliasing).
    """

    def __init__(
        self,
        lmax: int,
        activation: Callable[[Tensor], Tensor] | None = None,
        resolution: int = 4,
    ) -> None:
        super().__init__()
        if resolution < 2:
            raise ValueError(f"resolution must be >= 2, got {resolution}")
        self.lmax = lmax
        self.activation = activation if activation is not None else nn.SiLU()
        degree = resolution * max(lmax, 1)
        self.grid = S2Grid(lmax, res_beta=degree // 2 + 1, res_alpha=degree + 1)

    def reset_parameters(self) -> None:
        """No parameters (PyG's layer contract)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[-2] != num_components(self.lmax):
            raise ValueError(
                f"S2Activation: expected x of shape [..., {num_components(self.lmax)}, C], "
                f"got {tuple(x.shape)}"
            )
        return self.grid.from_grid(self.activation(self.grid.to_grid(x)))

    def extra_repr(self) -> str:
        return f"lmax={self.lmax}, grid={self.grid.res_beta}x{self.grid.res_alpha}"


def make_nonlinearity(name: str, lmax: int, channels: int) -> nn.Module:
    """The nonlinearity ``name`` (one of :data:`NONLINEARITIES`) for ``lmax`` and ``channels``."""
    if name == "gate":
        return Gate(lmax, channels)
    if name == "s2":
        return S2Activation(lmax)
    raise ValueError(f"nonlinearity: must be one of {list(NONLINEARITIES)}, got {name!r}")
