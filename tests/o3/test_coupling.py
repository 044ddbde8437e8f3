import itertools
import math

import pytest
import torch
from e3nn import o3 as e3o3

from geobasis.o3 import S2Grid, clebsch_gordan, gaunt, random_orthogonal, wigner_D

TRIPLES = [
    (l1, l2, l3)
    for l1, l2 in itertools.product(range(5), repeat=2)
    for l3 in range(abs(l1 - l2), l1 + l2 + 1)
]


@pytest.mark.parametrize("l1,l2,l3", TRIPLES)
def test_clebsch_gordan_is_scaled_e3nn_wigner_3j(l1, l2, l3):
    ours = clebsch_gordan(l1, l2, l3, dtype=torch.float64)
    ref = e3o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * math.sqrt(2 * l3 + 1)
    assert (ours - ref).abs().max() <= 1e-12


@pytest.mark.parametrize(
    "l1,l2,l3", [(1, 1, 1), (2, 2, 3), (3, 4, 5), (6, 5, 4), (8, 8, 8), (10, 9, 7)]
)
def test_clebsch_gordan_equivariant_and_isometric(l1, l2, l3):
    C = clebsch_gordan(l1, l2, l3, dtype=torch.float64)
    L = max(l1, l2, l3)
    R = random_orthogonal(dtype=torch.float64)
    D = wigner_D(L, R)
    d1, d2, d3 = (D[l * l : (l + 1) ** 2, l * l : (l + 1) ** 2] for l in (l1, l2, l3))
    lhs = torch.einsum("ai,bj,abk->ijk", d1, d2, C)
    rhs = torch.einsum("ck,ijk->ijc", d3, C)
    if (l1 + l2 + l3) % 2:  # odd paths are pseudotensors: an extra det(R)
        rhs = rhs * torch.linalg.det(R)
    assert (lhs - rhs).abs().max() <= 1e-12
    gram = torch.einsum("abc,abd->cd", C, C)
    assert torch.allclose(gram, torch.eye(2 * l3 + 1, dtype=torch.float64), atol=1e-12)


def test_gaunt_equals_high_order_quadrature():
    grid = S2Grid(12, 20, 40)
    Y, w = grid.harmonics, grid.weights
    for l1, l2, l3 in itertools.product(range(5), range(5), range(9)):
        G = gaunt(l1, l2, l3, dtype=torch.float64)
        blk = lambda l: Y[:, l * l : (l + 1) ** 2]
        q = torch.einsum("ga,gb,gc,g->abc", blk(l1), blk(l2), blk(l3), w)
        assert (G - q).abs().max() <= 1e-13, (l1, l2, l3)


def test_gaunt_vanishes_on_odd_paths_and_outside_triangle():
    assert not gaunt(1, 1, 1).any()
    assert not gaunt(1, 1, 3).any()
    assert not clebsch_gordan(1, 1, 3).any()


def test_errors():
    with pytest.raises(ValueError, match="l2"):
        clebsch_gordan(1, -1, 1)
