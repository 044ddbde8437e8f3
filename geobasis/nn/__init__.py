"""Layers with learnable parameters, built on ``o3``, ``radial``, ``graph`` and ``products``.

``geobasis.nn.conv`` holds the PyG message-passing layers, ``geobasis.nn.models`` the
complete models.
"""

from geobasis.nn.activation import Gate, S2Activation
from geobasis.nn.conv import PRODUCTS, SFBC_WINDOWS, EquivariantConv, SFBCConv
from geobasis.nn.linear import EquivariantLinear
from geobasis.nn.models import (
    MODELS,
    PE_CHOICES,
    AtomisticModel,
    CartesianMPNN,
    FAENet,
    GINERegressor,
    Potential,
)
from geobasis.nn.norm import EquivariantRMSNorm

__all__ = [
    "EquivariantConv",
    "EquivariantLinear",
    "EquivariantRMSNorm",
    "Gate",
    "S2Activation",
    "Potential",
    "FAENet",
    "CartesianMPNN",
    "AtomisticModel",
    "MODELS",
    "GINERegressor",
    "PE_CHOICES",
    "PRODUCTS",
    "SFBCConv",
    "SFBC_WINDOWS",
]
