"""Message-passing layers (PyG ``MessagePassing``)."""

from geobasis.nn.conv.equivariant import PRODUCTS, EquivariantConv
from geobasis.nn.conv.sfbc import SFBC_WINDOWS, SFBCConv

__all__ = ["EquivariantConv", "PRODUCTS", "SFBCConv", "SFBC_WINDOWS"]
