"""Layers with learnable parameters, built on ``o3``, ``radial``, ``graph`` and ``products``.

``geobasis.nn.conv`` holds the PyG message-passing layers.
"""

from geobasis.nn.conv import SFBC_WINDOWS, SFBCConv

__all__ = ["SFBCConv", "SFBC_WINDOWS"]
