"""Neighbour lists and edge geometry."""

from geobasis.graph.bonds import COVALENT_RADII, covalent_bonds
from geobasis.graph.geometry import angle_between, edge_vectors, safe_norm, triplet_angles, triplets
from geobasis.graph.radius import radius_graph

__all__ = [
    "radius_graph",
    "covalent_bonds",
    "COVALENT_RADII",
    "edge_vectors",
    "safe_norm",
    "triplets",
    "angle_between",
    "triplet_angles",
]
