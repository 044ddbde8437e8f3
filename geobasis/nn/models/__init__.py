"""Complete models.

:data:`MODELS` maps the name stored in a model's ``config["model"]`` (and used by
``geobasis train --model``) to its class; :func:`build_model` builds one from validated
options and :func:`load_model` from a checkpoint.
"""

from geobasis.nn.models.atomistic import AtomicGraph, AtomisticModel
from geobasis.nn.models.faenet import CartesianMPNN, FAENet
from geobasis.nn.models.gine import PE_CHOICES, GINERegressor
from geobasis.nn.models.many_body import ManyBodyPotential
from geobasis.nn.models.potential import Potential
from geobasis.nn.models.registry import (
    CHECKPOINT_VERSION,
    MODELS,
    build_model,
    check_model_options,
    load_model,
)

__all__ = [
    "AtomisticModel",
    "AtomicGraph",
    "Potential",
    "ManyBodyPotential",
    "FAENet",
    "CartesianMPNN",
    "GINERegressor",
    "PE_CHOICES",
    "MODELS",
    "build_model",
    "check_model_options",
    "load_model",
    "CHECKPOINT_VERSION",
]
