"""Hypothesis strategies for point clouds, molecules and graphs (needs ``hypothesis``).

Example::

    from hypothesis import given
    from geobasis.testing.strategies import molecules

    @given(molecules(max_atoms=12))
    def test_energy_is_invariant(mol):
        assert_equivariant(model, mol, outputs={"energy": "invariant", "forces": "forces"})
"""

from __future__ import annotations

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "geobasis.testing.strategies needs hypothesis: pip install 'geobasis[test]'"
    ) from exc

import torch
from torch_geometric.data import Batch, Data

__all__ = ["point_clouds", "molecules", "graphs", "batches"]

_ELEMENTS = (1, 6, 7, 8, 9)


@st.composite
def point_clouds(
    draw,
    min_points: int = 1,
    max_points: int = 32,
    scale: float = 3.0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Random positions ``[N, 3]`` (Gaussian, seeded by hypothesis so failures shrink)."""
    n = draw(st.integers(min_points, max_points))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=gen, dtype=dtype) * scale


@st.composite
def molecules(
    draw,
    min_atoms: int = 2,
    max_atoms: int = 16,
    min_distance: float = 0.9,
    dtype: torch.dtype = torch.float64,
) -> Data:
    """Molecule-like ``Data(pos, z)``: atoms at least ``min_distance`` apart, elements H/C/N/O/F."""
    n = draw(st.integers(min_atoms, max_atoms))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    points: list[torch.Tensor] = []
    side = 1.5 * n ** (1 / 3) + 1.0
    while len(points) < n:
        cand = (torch.rand(3, generator=gen, dtype=dtype) - 0.5) * 2 * side
        if all(float((cand - p).norm()) >= min_distance for p in points):
            points.append(cand)
        else:
            side *= 1.01
    z = torch.tensor(
        [_ELEMENTS[int(i)] for i in torch.randint(0, len(_ELEMENTS), (n,), generator=gen)]
    )
    return Data(pos=torch.stack(points), z=z)


@st.composite
def graphs(
    draw,
    min_nodes: int = 1,
    max_nodes: int = 16,
    edge_probability: float = 0.3,
    num_features: int = 4,
    dtype: torch.dtype = torch.float64,
) -> Data:
    """Random graph ``Data(pos, x, edge_index)`` with symmetric edges and no self-loops."""
    n = draw(st.integers(min_nodes, max_nodes))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    adj = torch.rand(n, n, generator=gen) < edge_probability
    adj = torch.triu(adj, 1)
    adj = adj | adj.t()
    edge_index = adj.nonzero().t().flip(0).contiguous()
    pos = torch.randn(n, 3, generator=gen, dtype=dtype) * 2
    x = torch.randn(n, num_features, generator=gen, dtype=dtype)
    return Data(pos=pos, x=x, edge_index=edge_index)


@st.composite
def batches(draw, element=None, min_graphs: int = 1, max_graphs: int = 4) -> Batch:
    """A PyG ``Batch`` of graphs drawn from ``element`` (default :func:`molecules`)."""
    element = element if element is not None else molecules()
    items = draw(st.lists(element, min_size=min_graphs, max_size=max_graphs))
    return Batch.from_data_list(items)
