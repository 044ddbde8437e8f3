"""ASE calculator and molecular dynamics for trained potentials (needs ``ase``)."""

from geobasis.calculators.ase import GeoBasisCalculator
from geobasis.calculators.md import run_md

__all__ = ["GeoBasisCalculator", "run_md"]
