"""1-D SPH solver: kernel, density, forces, conservation, determinism."""

import pytest
import torch

from geobasis.data import (
    simulate_sph_1d,
    sph_density,
    sph_pressure_acceleration,
    wendland_c2_1d,
    wendland_c2_1d_derivative,
)


def test_kernel_has_unit_integral_and_its_derivative():
    h = 0.3
    r = torch.linspace(-h, h, 20001, dtype=torch.float64)
    assert abs(torch.trapezoid(wendland_c2_1d(r, h), r).item() - 1) < 1e-8
    x = torch.linspace(0.01, 0.29, 50, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(wendland_c2_1d(x, h).sum(), x)
    assert torch.allclose(grad, wendland_c2_1d_derivative(x.detach(), h), atol=1e-12)
    assert wendland_c2_1d(torch.tensor([h, 2 * h]), h).abs().max() == 0


def test_density_and_acceleration_equal_minimum_image_sums():
    trajectory = simulate_sph_1d(num_particles=96, num_frames=3, neighbours=10, seed=2)
    pos, h, m = trajectory.positions[-1], trajectory.support, trajectory.mass
    x = pos[:, 0]
    separation = torch.remainder(x[:, None] - x[None, :] + 1, 2) - 1  # x_i - x_j, wrapped
    density = (m * wendland_c2_1d(separation, h)).sum(1)
    assert torch.allclose(sph_density(pos, m, h), density, atol=1e-13)
    assert torch.allclose(trajectory.density[-1], density, atol=1e-13)
    pressure = trajectory.pressure[-1]
    factor = pressure / density**2
    grad = wendland_c2_1d_derivative(separation, h) * torch.sign(separation)
    acceleration = -(m * (factor[:, None] + factor[None, :]) * grad).sum(1)
    got = sph_pressure_acceleration(pos, density, pressure, m, h)
    assert torch.allclose(got, acceleration, atol=1e-12)
    assert torch.allclose(trajectory.pressure_acceleration[-1], acceleration, atol=1e-12)


def test_run_is_deterministic_conserves_momentum_and_moves():
    a = simulate_sph_1d(num_particles=128, num_frames=10, seed=7)
    b = simulate_sph_1d(num_particles=128, num_frames=10, seed=7)
    c = simulate_sph_1d(num_particles=128, num_frames=10, seed=8)
    assert torch.equal(a.positions, b.positions) and torch.equal(a.density, b.density)
    assert not torch.equal(a.positions, c.positions)
    assert a.velocities.sum(1).abs().max() < 1e-12  # pairwise antisymmetric forces
    assert a.pressure_acceleration.sum(1).abs().max() < 1e-10
    assert a.velocities[-1].abs().max() > 1e-3 and torch.all(a.times[1:] > a.times[:-1])
    assert a.positions.min() >= -1 and a.positions.max() < 1
    assert a.density.std() > 0.01  # the initial displacement compresses the gas


def test_errors():
    with pytest.raises(ValueError, match="num_particles"):
        simulate_sph_1d(num_particles=20, neighbours=12)
    with pytest.raises(ValueError, match="amplitude"):
        simulate_sph_1d(amplitude=0.7)
