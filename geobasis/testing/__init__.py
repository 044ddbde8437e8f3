"""Equivariance testing toolkit: assertions, random transformations, strategies, fixtures.

``geobasis.testing.strategies`` (hypothesis) and ``geobasis.testing.pytest_plugin``
(pytest) are imported on demand so that neither is a runtime dependency.
``geobasis.testing.checks`` is what ``geobasis check`` runs; ``ToyPotential`` is a small
equivariant reference model for trying the toolkit.
"""

from geobasis.o3.rotations import random_orthogonal, random_rotation
from geobasis.testing.equivariance import (
    TRANSFORMATIONS,
    EquivarianceError,
    EquivarianceReport,
    assert_equivariant,
    check_equivariance,
)
from geobasis.testing.toy import ToyPotential

__all__ = [
    "assert_equivariant",
    "check_equivariance",
    "EquivarianceReport",
    "EquivarianceError",
    "TRANSFORMATIONS",
    "random_rotation",
    "random_orthogonal",
    "ToyPotential",
]
