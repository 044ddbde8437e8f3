r"""Chemical bonds from covalent radii.

Atoms :math:`i, j` are bonded when

.. math::

    \lVert \vec x_i - \vec x_j \rVert \le s\,(r_{z_i} + r_{z_j}) + \delta

with the single-bond covalent radii :math:`r_z` of Cordero et al., "Covalent radii
revisited", Dalton Trans. (2008) (carbon: sp³), :math:`s` = ``scale`` and :math:`\delta`
= ``tolerance`` (0.45 Å by default, the common choice of Open Babel-like perception).
"""

from __future__ import annotations

import torch
from torch import Tensor

from geobasis.graph.radius import radius_graph

__all__ = ["covalent_bonds", "COVALENT_RADII"]

#: single-bond covalent radii in Å by atomic number (Cordero et al. 2008), H..Kr
COVALENT_RADII = {
    1: 0.31, 2: 0.28, 3: 1.28, 4: 0.96, 5: 0.84, 6: 0.76, 7: 0.71, 8: 0.66, 9: 0.57,
    10: 0.58, 11: 1.66, 12: 1.41, 13: 1.21, 14: 1.11, 15: 1.07, 16: 1.05, 17: 1.02,
    18: 1.06, 19: 2.03, 20: 1.76, 21: 1.70, 22: 1.60, 23: 1.53, 24: 1.39, 25: 1.39,
    26: 1.32, 27: 1.26, 28: 1.24, 29: 1.32, 30: 1.22, 31: 1.22, 32: 1.20, 33: 1.19,
    34: 1.20, 35: 1.20, 36: 1.16,
}  # fmt: skip


def covalent_bonds(
    pos: Tensor,
    z: Tensor,
    batch: Tensor | None = None,
    scale: float = 1.0,
    tolerance: float = 0.45,
) -> Tensor:
    """``edge_index [2, E]`` of the bonds (both directions, no self-loops) of every molecule.

    Args:
        pos: ``[N, 3]`` positions in Å.
        z: ``[N]`` atomic numbers (1..36).
        batch: ``[N]`` molecule of each atom.
        scale, tolerance: see the module docstring.
    """
    if z.shape != (pos.shape[0],):
        raise ValueError(f"z must be [N] = [{pos.shape[0]}], got {tuple(z.shape)}")
    table = torch.zeros(119, dtype=pos.dtype, device=pos.device)
    for number, radius in COVALENT_RADII.items():
        table[number] = radius
    radii = table[z.long()]
    if bool((radii == 0).any()):
        missing = sorted(set(z[radii == 0].tolist()))
        raise ValueError(f"no covalent radius for atomic numbers {missing} (known: 1..36)")
    if pos.shape[0] == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=pos.device)
    reach = float(2 * scale * radii.max() + tolerance)
    edge_index = radius_graph(pos.detach(), reach, batch)
    src, dst = edge_index
    length = torch.linalg.vector_norm(pos[src] - pos[dst], dim=-1)
    bonded = length <= scale * (radii[src] + radii[dst]) + tolerance
    return edge_index[:, bonded]
