"""Radial and coordinate bases, smooth cutoffs and stable special functions."""

from geobasis.radial.bases import (
    INTERVAL_BASES,
    BesselBasis,
    BSplineBasis,
    ChebyshevBasis,
    FourierBasis,
    GaussianBasis,
    SphericalBesselBasis,
    interval_basis,
    spherical_bessel_roots,
)
from geobasis.radial.cutoffs import CosineCutoff, PolynomialEnvelope
from geobasis.radial.special import log_iv, log_kv, spherical_jn, spherical_jn_all

__all__ = [
    "BesselBasis",
    "SphericalBesselBasis",
    "GaussianBasis",
    "ChebyshevBasis",
    "FourierBasis",
    "BSplineBasis",
    "spherical_bessel_roots",
    "interval_basis",
    "INTERVAL_BASES",
    "PolynomialEnvelope",
    "CosineCutoff",
    "spherical_jn",
    "spherical_jn_all",
    "log_iv",
    "log_kv",
]
