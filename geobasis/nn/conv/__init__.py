"""Message-passing layers (PyG ``MessagePassing``)."""

from geobasis.nn.conv.sfbc import SFBC_WINDOWS, SFBCConv

__all__ = ["SFBCConv", "SFBC_WINDOWS"]
