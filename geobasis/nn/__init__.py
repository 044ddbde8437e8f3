"""Layers with learnable parameters, built on ``o3``, ``radial``, ``graph`` and ``products``.

``geobasis.nn.conv`` holds the PyG message-passing layers, ``geobasis.nn.models`` the
complete models (registry :data:`MODELS`, :func:`build_model`, :func:`load_model`);
``edges.py`` the edge geometry a model computes once per forward.
"""

from geobasis.nn.activation import NONLINEARITIES, Gate, S2Activation
from geobasis.nn.contraction import (
    CONTRACTIONS,
    CGContraction,
    GauntGridContraction,
    SymmetricContraction,
)
from geobasis.nn.conv import PRODUCTS, SFBC_WINDOWS, EquivariantConv, SFBCConv
from geobasis.nn.edges import EdgeEmbedding, Edges
from geobasis.nn.linear import EquivariantLinear
from geobasis.nn.models import (
    MODELS,
    PE_CHOICES,
    AtomicGraph,
    AtomisticModel,
    CartesianMPNN,
    FAENet,
    GINERegressor,
    ManyBodyPotential,
    Potential,
    build_model,
    load_model,
)
from geobasis.nn.norm import EquivariantRMSNorm

__all__ = [
    "EquivariantConv",
    "EquivariantLinear",
    "SymmetricContraction",
    "CGContraction",
    "GauntGridContraction",
    "CONTRACTIONS",
    "EquivariantRMSNorm",
    "EdgeEmbedding",
    "Edges",
    "Gate",
    "S2Activation",
    "NONLINEARITIES",
    "Potential",
    "ManyBodyPotential",
    "FAENet",
    "CartesianMPNN",
    "AtomisticModel",
    "AtomicGraph",
    "MODELS",
    "build_model",
    "load_model",
    "GINERegressor",
    "PE_CHOICES",
    "PRODUCTS",
    "SFBCConv",
    "SFBC_WINDOWS",
]
