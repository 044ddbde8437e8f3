import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import geobasis.graph.radius as radius_module
from geobasis.graph import edge_vectors, radius_graph
from geobasis.o3 import random_rotation


def brute_force(pos, r, batch=None, loop=False):
    batch = torch.zeros(len(pos), dtype=torch.long) if batch is None else batch
    mask = (torch.cdist(pos, pos) < r) & (batch[:, None] == batch[None, :])
    if not loop:
        mask.fill_diagonal_(False)
    tgt, src = mask.nonzero(as_tuple=True)
    edges = torch.stack([src, tgt])
    return edges[:, torch.argsort(tgt * max(len(pos), 1) + src)]


def brute_force_periodic(pos, r, cell, loop=False):
    """Every (source, target, shift) by trying all images of the wrapped positions within
    reach, then expressing the shifts for the unwrapped ``pos`` (``pos = wrapped + w cell``:
    ``s = s_wrapped - w_source + w_target``); the image loop stays small for any ``pos``."""
    vol = torch.linalg.det(cell).abs()
    heights = [
        vol / torch.linalg.cross(cell[a], cell[b]).norm() for a, b in ((1, 2), (2, 0), (0, 1))
    ]
    frac = pos @ torch.linalg.inv(cell)
    wrap = torch.floor(frac)
    wrapped = (frac - wrap) @ cell
    reach = [int(torch.ceil(r / h)) + 1 for h in heights]
    found = set()
    for s in itertools.product(*[range(-m, m + 1) for m in reach]):
        shift = torch.tensor(s, dtype=pos.dtype)
        vec = wrapped[None, :, :] + shift @ cell - wrapped[:, None, :]
        mask = vec.norm(dim=-1) < r
        if not loop and not any(s):
            mask.fill_diagonal_(False)
        for i, j in mask.nonzero().tolist():
            true_shift = torch.tensor(s) - wrap[j].long() + wrap[i].long()
            found.add((j, i, *true_shift.tolist()))
    return found


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 120),
    r=st.floats(0.05, 4.0),
    graphs=st.integers(1, 4),
    loop=st.booleans(),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([0.1, 1.0, 5.0]),
    dense=st.booleans(),
)
def test_matches_brute_force(n, r, graphs, loop, seed, scale, dense):
    """Both the direct path (small inputs) and the cell list (forced here) agree with it."""
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=gen, dtype=torch.float64) * scale
    batch = torch.sort(torch.randint(0, graphs, (n,), generator=gen)).values
    saved = radius_module.DENSE_MAX_POINTS
    radius_module.DENSE_MAX_POINTS = saved if dense else -1
    try:
        got = radius_graph(pos, r, batch, loop=loop)
    finally:
        radius_module.DENSE_MAX_POINTS = saved
    assert torch.equal(got, brute_force(pos, r, batch, loop))


def test_cell_list_on_a_few_thousand_points():
    pos = torch.randn(3000, 3, dtype=torch.float64) * 6
    batch = torch.arange(3000) // 1000
    assert torch.equal(radius_graph(pos, 1.2, batch), brute_force(pos, 1.2, batch))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 10), r=st.floats(0.3, 3.5), seed=st.integers(0, 10_000), loop=st.booleans())
def test_periodic_matches_brute_force_including_small_cells(n, r, seed, loop):
    gen = torch.Generator().manual_seed(seed)
    cell = (
        torch.randn(3, 3, generator=gen, dtype=torch.float64) * 0.4
        + torch.eye(3, dtype=torch.float64) * 1.5
    )
    pos = torch.randn(n, 3, generator=gen, dtype=torch.float64) * 2  # not wrapped on purpose
    edge_index, shifts = radius_graph(pos, r, loop=loop, cell=cell)
    got = {(j, i, *s) for (j, i), s in zip(edge_index.t().tolist(), shifts.tolist())}
    assert got == brute_force_periodic(pos, r, cell, loop)
    vec, length = edge_vectors(pos, edge_index, shifts, cell)
    assert (length < r).all()


def test_atom_sees_its_own_images_in_a_small_cell():
    cell = torch.eye(3, dtype=torch.float64) * 1.0
    edge_index, shifts = radius_graph(torch.zeros(1, 3, dtype=torch.float64), 1.5, cell=cell)
    # 6 face neighbours at 1.0 and 12 edge neighbours at sqrt(2)
    assert edge_index.shape[1] == 18 and (edge_index == 0).all()


def test_mixed_periodicity_and_batched_cells():
    pos = torch.tensor(
        [[0.1, 0.1, 0.1], [0.1, 0.1, 3.9], [0.2, 0.2, 0.2], [0.2, 0.2, 3.8]], dtype=torch.float64
    )
    batch = torch.tensor([0, 0, 1, 1])
    cell = torch.eye(3, dtype=torch.float64).repeat(2, 1, 1) * 4.0
    pbc = torch.tensor([[True, True, True], [True, True, False]])
    edge_index, shifts = radius_graph(pos, 0.5, batch, cell=cell, pbc=pbc)
    assert {tuple(e) for e in edge_index.t().tolist()} == {(0, 1), (1, 0)}
    assert shifts.abs().sum() == 2


def test_max_num_neighbors_keeps_the_nearest():
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]], dtype=torch.float64)
    edge_index = radius_graph(pos, 10.0, max_num_neighbors=2)
    sources_of_0 = edge_index[0, edge_index[1] == 0].tolist()
    assert sorted(sources_of_0) == [1, 2]
    assert (torch.bincount(edge_index[1]) == 2).all()


def test_large_system_is_linear_memory():
    # 100,000 points at molecular density: an N x N matrix would need 40 GB
    n = 100_000
    pos = torch.rand(n, 3) * (n / 0.1) ** (1 / 3)
    edge_index = radius_graph(pos, 3.0)
    sample = torch.randint(0, n, (50,))
    for i in sample.tolist():
        d = (pos - pos[i]).norm(dim=-1)
        expected = set(torch.nonzero(d < 3.0).flatten().tolist()) - {i}
        assert set(edge_index[0, edge_index[1] == i].tolist()) == expected


def test_rotation_and_translation_invariance():
    pos = torch.randn(60, 3, dtype=torch.float64) * 2
    R = random_rotation(dtype=torch.float64)
    assert torch.equal(radius_graph(pos, 1.5), radius_graph(pos @ R.t() + 3.0, 1.5))


def test_empty_and_single():
    assert radius_graph(torch.zeros(0, 3), 1.0).shape == (2, 0)
    assert radius_graph(torch.zeros(1, 3), 1.0).shape == (2, 0)
    assert radius_graph(torch.zeros(1, 3), 1.0, loop=True).tolist() == [[0], [0]]


def test_errors():
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        radius_graph(torch.zeros(4, 5), 1.0)
    with pytest.raises(ValueError, match="positive"):
        radius_graph(torch.zeros(4, 3), -1.0)
    with pytest.raises(ValueError, match="batch"):
        radius_graph(torch.zeros(4, 3), 1.0, batch=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        radius_graph(torch.full((2, 3), float("nan")), 1.0)
    with pytest.raises(ValueError, match="cell"):
        radius_graph(torch.zeros(2, 3), 1.0, pbc=True)
    with pytest.raises(ValueError, match="singular"):
        radius_graph(torch.zeros(2, 3), 1.0, cell=torch.zeros(3, 3))


def test_periodic_max_num_neighbors_keeps_the_nearest_images():
    cell = torch.eye(3, dtype=torch.float64)
    edge_index, shifts = radius_graph(
        torch.zeros(1, 3, dtype=torch.float64), 1.5, cell=cell, max_num_neighbors=6
    )
    # of 6 face images at 1.0 and 12 edge images at sqrt(2), the 6 nearest are the faces
    assert edge_index.shape[1] == 6 and (shifts.abs().sum(-1) == 1).all()


@pytest.mark.parametrize("dim", [1, 2])
def test_lower_dimensional_points_match_brute_force(dim):
    g = torch.Generator().manual_seed(dim)
    pos = torch.rand(300, dim, generator=g, dtype=torch.float64) * 2 - 1
    r = 0.2 if dim == 2 else 0.05
    edge_index = radius_graph(pos, r)
    dist = torch.cdist(pos, pos)
    expected = ((dist < r) & ~torch.eye(300, dtype=torch.bool)).sum()
    assert edge_index.shape[1] == expected
    assert (dist[edge_index[1], edge_index[0]] < r).all()
    # periodic box [-1, 1)^d: minimum-image distances
    cell = 2 * torch.eye(dim, dtype=torch.float64)
    edge_index, shifts = radius_graph(pos, r, cell=cell)
    assert shifts.shape == (edge_index.shape[1], dim)
    difference = torch.remainder(pos[None] - pos[:, None] + 1, 2) - 1
    expected = ((difference.norm(dim=-1) < r) & ~torch.eye(300, dtype=torch.bool)).sum()
    assert edge_index.shape[1] == expected
    vec = pos[edge_index[0]] + shifts.double() @ cell - pos[edge_index[1]]
    assert (vec.norm(dim=-1) < r).all()


def test_lower_dimensional_errors():
    with pytest.raises(ValueError, match=r"cell must be \[1, 1\]"):
        radius_graph(torch.rand(5, 1), 0.1, cell=torch.eye(3))
    with pytest.raises(ValueError, match="pbc"):
        radius_graph(torch.rand(5, 2), 0.1, cell=torch.eye(2), pbc=[True, False, True])
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        radius_graph(torch.rand(5, 4), 0.1)


def test_half_precision_and_non_finite_input_are_named():
    pos = torch.randn(10, 3)
    with pytest.raises(TypeError, match="pos must be float32 or float64, got torch.float16"):
        radius_graph(pos.half(), 2.0)
    bad = pos.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="pos has non-finite"):
        radius_graph(bad, 2.0)
    cell = torch.eye(3) * 4.0
    cell[0, 0] = float("inf")
    with pytest.raises(ValueError, match="cell has non-finite"):
        radius_graph(pos, 2.0, cell=cell)


def _ase_edges(pos, r, cell, pbc):
    """ASE's neighbour list as a set of (source, target, shift)."""
    from ase.neighborlist import primitive_neighbor_list

    i, j, shift = primitive_neighbor_list("ijS", pbc, cell.numpy(), pos.numpy(), r)
    return {(int(b), int(a), *map(int, s)) for a, b, s in zip(i, j, shift)}


def _edges(edge_index, shifts):
    return {(s, t, *sh) for (s, t), sh in zip(edge_index.t().tolist(), shifts.tolist())}


@pytest.mark.parametrize("backend", ["torch", "vesin"])
def test_slab_with_atoms_outside_the_cell_in_its_open_direction_matches_ase(backend):
    """A slab periodic in x and z whose atoms spread beyond the cell along y (vacuum)."""
    if backend == "vesin":
        pytest.importorskip("vesin")
    pytest.importorskip("ase")
    gen = torch.Generator().manual_seed(0)
    cell = torch.tensor([[9.0, 0.3, 0.0], [0.5, 8.0, 0.2], [0.1, -0.4, 10.0]], dtype=torch.float64)
    pos = torch.randn(400, 3, generator=gen, dtype=torch.float64) * 6
    pbc = [True, False, True]
    edge_index, shifts = radius_graph(pos, 5.0, cell=cell, pbc=torch.tensor(pbc), backend=backend)
    assert _edges(edge_index, shifts) == _ase_edges(pos, 5.0, cell, pbc)
    assert shifts[:, 1].eq(0).all()


def _same(a, b):
    pairs = zip(a, b) if isinstance(a, tuple) else [(a, b)]
    return all(torch.equal(x, y) for x, y in pairs)


@pytest.mark.parametrize(
    "case",
    ["open", "loop", "nearest", "batched", "periodic", "mixed", "small cell", "2-D periodic"],
)
def test_vesin_gives_the_cell_lists_edges_in_the_same_order(case):
    pytest.importorskip("vesin")
    gen = torch.Generator().manual_seed(1)
    pos = torch.rand(3000, 3, generator=gen, dtype=torch.float64) * 31
    cell = torch.tensor(
        [[31.0, 0.4, 0.0], [0.3, 30.0, 0.5], [-0.2, 0.1, 32.0]], dtype=torch.float64
    )
    kwargs = {
        "open": {},
        "loop": {"loop": True},
        "nearest": {"max_num_neighbors": 7},
        "batched": {"batch": (torch.arange(3000) >= 1200).long()},
        "periodic": {"cell": cell, "loop": True},
        "mixed": {"cell": cell, "pbc": torch.tensor([True, False, True]), "max_num_neighbors": 9},
        "small cell": {"cell": cell / 10, "loop": True},
        "2-D periodic": {"cell": cell[:2, :2]},
    }[case]
    if case == "small cell":
        pos = pos[:300] / 10
    if case == "2-D periodic":
        pos = pos[:, :2]
    expected = radius_graph(pos, 4.0, backend="torch", **kwargs)
    got = radius_graph(pos, 4.0, backend="vesin", **kwargs)
    assert _same(expected, got)
    assert _same(expected, radius_graph(pos, 4.0, **kwargs))  # "auto" picks either


@pytest.mark.parametrize(
    "case", ["open", "loop", "nearest", "batched", "2-D", "many pairs", "ties at r"]
)
def test_scipy_gives_the_cell_lists_edges_in_the_same_order(case, monkeypatch):
    """cKDTree's half list, mirrored and ordered (by a key sort, or as a sparse matrix for
    ``many pairs``), against the torch cell list; pairs at exactly ``r`` are left out."""
    gen = torch.Generator().manual_seed(2)
    pos = torch.rand(3000, 3, generator=gen, dtype=torch.float64) * 31
    kwargs = {
        "open": {}, "loop": {"loop": True}, "nearest": {"max_num_neighbors": 7},
        "batched": {"batch": (torch.arange(3000) >= 1200).long()}, "2-D": {},
        "many pairs": {"loop": True}, "ties at r": {},
    }[case]  # fmt: skip
    if case == "2-D":
        pos = pos[:, :2]
    if case == "many pairs":  # the sparse-matrix route: keys that do not fit int32
        monkeypatch.setattr(radius_module, "KEY_SORT_MAX_PAIRS", 10)
        pos = torch.cat([pos, torch.full((47000, 3), 1e6, dtype=torch.float64) +
                         torch.arange(47000, dtype=torch.float64)[:, None] * 10])  # fmt: skip
    if case == "ties at r":  # a cubic lattice with spacing r: no edges at all
        grid = torch.arange(8, dtype=torch.float64)
        pos = torch.cartesian_prod(grid, grid, grid) * 4.0
    expected = radius_graph(pos, 4.0, backend="torch", **kwargs)
    got = radius_graph(pos, 4.0, backend="scipy", **kwargs)
    assert _same(expected, got)
    assert _same(expected, radius_graph(pos, 4.0, **kwargs))  # "auto"
    if case == "ties at r":
        assert got.shape[1] == 0


def test_backend_errors():
    pos = torch.rand(10, 3)
    with pytest.raises(ValueError, match="backend must be one of"):
        radius_graph(pos, 1.0, backend="kdtree")
    with pytest.raises(ValueError, match="backend='scipy' searches open systems only"):
        radius_graph(pos, 1.0, cell=torch.eye(3) * 5, backend="scipy")
    if not radius_module.WITH_VESIN:
        with pytest.raises(ImportError, match="pip install vesin"):
            radius_graph(pos, 1.0, backend="vesin")
