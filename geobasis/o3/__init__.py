"""Rotations, spherical harmonics, coupling coefficients and S² grids (no learnable parameters)."""

from geobasis.o3._spherical_harmonics import SphericalHarmonics, spherical_harmonics
from geobasis.o3.conventions import (
    from_e3nn,
    from_standard,
    irreps_string,
    spherical_harmonics_standard,
    to_e3nn,
    to_standard,
)
from geobasis.o3.coupling import (
    clebsch_gordan,
    complex_clebsch_gordan,
    gaunt,
    gaunt_factor,
    real_to_complex,
)
from geobasis.o3.rotations import (
    angles_to_matrix,
    axis_angle_to_matrix,
    matrix_to_angles,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_x,
    matrix_y,
    matrix_z,
    quaternion_to_matrix,
    random_orthogonal,
    random_quaternion,
    random_rotation,
)
from geobasis.o3.s2grid import S2Grid, from_grid, s2_grid, to_grid
from geobasis.o3.wigner import wigner_D

__all__ = [
    "SphericalHarmonics",
    "spherical_harmonics",
    "spherical_harmonics_standard",
    "wigner_D",
    "clebsch_gordan",
    "gaunt",
    "gaunt_factor",
    "complex_clebsch_gordan",
    "real_to_complex",
    "S2Grid",
    "s2_grid",
    "to_grid",
    "from_grid",
    "to_e3nn",
    "from_e3nn",
    "irreps_string",
    "to_standard",
    "from_standard",
    "random_rotation",
    "random_orthogonal",
    "random_quaternion",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "angles_to_matrix",
    "matrix_to_angles",
    "matrix_x",
    "matrix_y",
    "matrix_z",
]
