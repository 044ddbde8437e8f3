import pytest
import torch

from geobasis.o3 import S2Grid, from_grid, s2_grid, spherical_harmonics, to_grid


@pytest.mark.parametrize("lmax", [0, 1, 5, 12])
def test_round_trip_is_exact(lmax):
    x = torch.randn(3, (lmax + 1) ** 2, 4, dtype=torch.float64)
    assert (from_grid(to_grid(x, lmax), lmax) - x).abs().max() <= 1e-12


def test_weights_and_points():
    points, weights = s2_grid(7, 13)
    assert torch.allclose(points.norm(dim=-1), torch.ones(91, dtype=torch.float64))
    assert torch.isclose(weights.sum(), torch.tensor(4 * torch.pi, dtype=torch.float64))


def test_to_grid_evaluates_the_signal():
    grid = S2Grid(4, 9, 17)
    x = torch.randn((4 + 1) ** 2, 2, dtype=torch.float64)
    expected = spherical_harmonics(4, grid.points) @ x
    assert torch.allclose(grid.to_grid(x), expected)


def test_product_of_signals_on_a_finer_grid():
    # the product of degree-2 and degree-3 signals has degree 5: exact on a grid for 5
    grid = S2Grid(5)
    a = torch.zeros(36, 1, dtype=torch.float64)
    b = torch.zeros(36, 1, dtype=torch.float64)
    a[:9] = torch.randn(9, 1, dtype=torch.float64)
    b[:16] = torch.randn(16, 1, dtype=torch.float64)
    prod = grid.from_grid(grid.to_grid(a) * grid.to_grid(b))
    pts = torch.randn(30, 3, dtype=torch.float64)
    Y = spherical_harmonics(5, pts)
    assert torch.allclose(Y @ prod, (Y @ a) * (Y @ b), atol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match=r"\[\.\.\., 16, C\]"):
        S2Grid(3).to_grid(torch.randn(9, 2))
    with pytest.raises(ValueError):
        s2_grid(0, 3)
