import math

import pytest
import torch

from geobasis.graph import angle_between, edge_vectors, radius_graph, triplet_angles, triplets


def test_edge_vectors_point_from_target_to_source():
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0]], dtype=torch.float64)
    edge_index = torch.tensor([[1], [0]])  # 1 -> 0
    vec, length = edge_vectors(pos, edge_index)
    assert vec.tolist() == [[1.0, 0.0, 0.0]] and length.tolist() == [1.0]


def test_coincident_points_have_finite_gradients():
    pos = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    vec, length = edge_vectors(pos, torch.tensor([[0, 1], [1, 0]]))
    (g,) = torch.autograd.grad(length.sum(), pos)
    assert torch.isfinite(g).all()


def test_triplets_brute_force():
    pos = torch.randn(25, 3, dtype=torch.float64)
    edge_index = radius_graph(pos, 1.3)
    idx_kj, idx_ji, (i, j, k) = triplets(edge_index, 25)
    got = set(zip(i.tolist(), j.tolist(), k.tolist()))
    edges = set(map(tuple, edge_index.t().tolist()))
    expected = {(b, a, c) for (a, b) in edges for (c, a2) in edges if a2 == a and c != b}
    assert got == expected
    assert torch.equal(edge_index[1, idx_ji], i) and torch.equal(edge_index[0, idx_ji], j)
    assert torch.equal(edge_index[1, idx_kj], j) and torch.equal(edge_index[0, idx_kj], k)


def test_angles_atan2_form_matches_acos_and_is_safe():
    a = torch.randn(100, 3, dtype=torch.float64)
    b = torch.randn(100, 3, dtype=torch.float64)
    ref = torch.acos((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)))
    assert torch.allclose(angle_between(a, b), ref, atol=1e-12)
    z = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    ang = angle_between(z, torch.ones(2, 3, dtype=torch.float64))
    (g,) = torch.autograd.grad(ang.sum(), z)
    assert torch.isfinite(ang).all() and torch.isfinite(g).all()
    # near-parallel vectors keep their accuracy (acos loses it)
    eps = 1e-9
    tiny = angle_between(
        torch.tensor([1.0, 0, 0], dtype=torch.float64),
        torch.tensor([1.0, eps, 0], dtype=torch.float64),
    )
    assert math.isclose(float(tiny), eps, rel_tol=1e-6)


def test_triplet_angles_water():
    pos = torch.tensor(
        [[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]], dtype=torch.float64
    )
    edge_index = radius_graph(pos, 1.2)  # O-H bonds only
    angles, (idx_kj, idx_ji, (i, j, k)) = triplet_angles(pos, edge_index)
    assert len(angles) == 2 and (j == 0).all()
    assert torch.allclose(
        angles, torch.full((2,), math.radians(104.5), dtype=torch.float64), atol=1e-3
    )


def test_errors():
    with pytest.raises(ValueError, match=r"\[2, E\]"):
        triplets(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="shifts"):
        edge_vectors(
            torch.zeros(2, 3), torch.zeros(2, 1, dtype=torch.long), shifts=torch.zeros(1, 3)
        )
