"""Datasets and data generators.

``geobasis.data.sph``: a deterministic 1-D compressible SPH solver (particle data for
:class:`geobasis.nn.SFBCConv`).
"""

from geobasis.data.sph import (
    SPHTrajectory,
    simulate_sph_1d,
    sph_density,
    sph_pressure_acceleration,
    wendland_c2_1d,
    wendland_c2_1d_derivative,
)

__all__ = [
    "SPHTrajectory",
    "simulate_sph_1d",
    "sph_density",
    "sph_pressure_acceleration",
    "wendland_c2_1d",
    "wendland_c2_1d_derivative",
]
