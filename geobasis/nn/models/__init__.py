"""Complete models.

:data:`MODELS` maps the name stored in a model's ``config["model"]`` (and used by
``geobasis train --model``) to its class.
"""

from geobasis.nn.models.atomistic import AtomisticModel
from geobasis.nn.models.faenet import CartesianMPNN, FAENet
from geobasis.nn.models.gine import PE_CHOICES, GINERegressor
from geobasis.nn.models.potential import Potential

MODELS: dict[str, type[AtomisticModel]] = {"potential": Potential, "faenet": FAENet}

__all__ = [
    "AtomisticModel",
    "Potential",
    "FAENet",
    "CartesianMPNN",
    "GINERegressor",
    "PE_CHOICES",
    "MODELS",
]
