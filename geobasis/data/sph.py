r"""A small, deterministic 1-D compressible SPH solver: training data for particle models.

Particles of equal mass :math:`m` move in a periodic domain :math:`[-1, 1)` (the setting
of test case I of Winchenbach & Thuerey, 2024).  With the 1-D Wendland C2 kernel of
support :math:`h`, :math:`q = |x_{ij}| / h`,

.. math::

    W(r, h) = \frac{5}{4h} (1 - q)^3 (1 + 3q), \qquad
    \frac{\partial W}{\partial r} = -\frac{15}{h^2} q (1 - q)^2,

the density, the equation of state and the pressure acceleration are

.. math::

    \rho_i = \sum_j m W(|x_{ij}|, h), \qquad P_i = \kappa \rho_i^\gamma, \qquad
    a_i = -\sum_j m \Big(\frac{P_i}{\rho_i^2} + \frac{P_j}{\rho_j^2}\Big)
        \frac{\partial W}{\partial x_i}(x_i - x_j),

plus Monaghan's artificial viscosity :math:`\Pi_{ij}` for shocks.  Time stepping is
kick-drift-kick leapfrog with a CFL time step.  The initial state is a uniform lattice
displaced by a smooth random field (a few Fourier modes drawn from ``seed``) at rest,
so every run is reproducible and compressions travel as sound and shock waves.

The density is a *symmetric* (even-kernel) function of the neighbourhood, the pressure
acceleration an *antisymmetric* (odd-kernel) one: the pair of targets SFBC uses to show
that the symmetry of a convolution basis decides what it can learn.

References: Monaghan, "Smoothed particle hydrodynamics", Rep. Prog. Phys. 68 (2005);
Wendland, Adv. Comput. Math. 4 (1995); Winchenbach & Thuerey (ICLR 2024).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from geobasis.graph import edge_vectors, radius_graph

__all__ = [
    "SPHTrajectory",
    "simulate_sph_1d",
    "wendland_c2_1d",
    "wendland_c2_1d_derivative",
    "sph_density",
    "sph_pressure_acceleration",
]

_BOX = 2.0  # domain [-1, 1)


def wendland_c2_1d(r: Tensor, h: float) -> Tensor:
    r"""1-D Wendland C2 kernel :math:`\frac{5}{4h}(1-q)^3_+(1+3q)`, :math:`q = r/h`
    (unit integral over the line)."""
    q = (r.abs() / h).clamp(max=1.0)
    return 5 / (4 * h) * (1 - q) ** 3 * (1 + 3 * q)


def wendland_c2_1d_derivative(r: Tensor, h: float) -> Tensor:
    r""":math:`\partial W / \partial r = -\frac{15}{h^2} q (1-q)^2_+` for :math:`r \ge 0`."""
    q = (r.abs() / h).clamp(max=1.0)
    return -15 / h**2 * q * (1 - q) ** 2


def _pairs(pos: Tensor, h: float) -> tuple[Tensor, Tensor]:
    """Periodic neighbour pairs (self included) and signed separations ``x_i - x_j``."""
    cell = torch.tensor([[_BOX]], dtype=pos.dtype, device=pos.device)
    edge_index, shifts = radius_graph(pos, h, loop=True, cell=cell)
    vectors, _ = edge_vectors(pos, edge_index, shifts, cell)  # x_j - x_i
    return edge_index, -vectors[:, 0]


def sph_density(pos: Tensor, mass: float, h: float) -> Tensor:
    r""":math:`\rho_i = \sum_j m W(|x_i - x_j|, h)` (self term included), ``pos [N, 1]`` ->
    ``[N]``."""
    edge_index, separation = _pairs(pos, h)
    contributions = mass * wendland_c2_1d(separation, h)
    return torch.zeros(pos.shape[0], dtype=pos.dtype).index_add(0, edge_index[1], contributions)


def sph_pressure_acceleration(
    pos: Tensor, density: Tensor, pressure: Tensor, mass: float, h: float
) -> Tensor:
    r"""Symmetric SPH pressure acceleration :math:`a_i` (see the module), ``[N]``."""
    (src, dst), separation = _pairs(pos, h)
    grad = wendland_c2_1d_derivative(separation, h) * torch.sign(separation)  # dW/dx_i
    factor = pressure / density**2
    terms = -mass * (factor[dst] + factor[src]) * grad
    return torch.zeros_like(density).index_add(0, dst, terms)


@dataclass
class SPHTrajectory:
    """Frames of a 1-D SPH run; per-frame tensors are ``[T, N]`` (positions ``[T, N, 1]``)."""

    positions: Tensor
    velocities: Tensor
    density: Tensor
    pressure: Tensor
    pressure_acceleration: Tensor
    times: Tensor
    mass: float
    support: float
    box: float = _BOX

    @property
    def cell(self) -> Tensor:
        """The periodic cell ``[1, 1]`` for :func:`geobasis.graph.radius_graph`."""
        return torch.tensor([[self.box]], dtype=self.positions.dtype)

    def __len__(self) -> int:
        return self.positions.shape[0]


def _accelerations(
    x: Tensor, v: Tensor, mass: float, h: float, kappa: float, gamma: float, viscosity: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(total acceleration, density, pressure, pressure acceleration)`` of the particles at
    ``x`` with velocities ``v`` (pressure gradient plus Monaghan viscosity)."""
    pos = x[:, None]
    (src, dst), separation = _pairs(pos, h)
    density = torch.zeros_like(x).index_add(0, dst, mass * wendland_c2_1d(separation, h))
    pressure = kappa * density**gamma
    grad = wendland_c2_1d_derivative(separation, h) * torch.sign(separation)
    factor = pressure / density**2
    a_pressure = torch.zeros_like(x).index_add(0, dst, -mass * (factor[dst] + factor[src]) * grad)
    # Monaghan artificial viscosity on approaching pairs
    sound = torch.sqrt(gamma * pressure / density)
    approach = (v[dst] - v[src]) * separation
    mu = h * approach / (separation**2 + 0.01 * h * h)
    mu = torch.where(approach < 0, mu, torch.zeros_like(mu))
    mean_sound = 0.5 * (sound[dst] + sound[src])
    mean_density = 0.5 * (density[dst] + density[src])
    pi = (-viscosity * mean_sound * mu + 2 * viscosity * mu * mu) / mean_density
    a_visc = torch.zeros_like(x).index_add(0, dst, -mass * pi * grad)
    return a_pressure + a_visc, density, pressure, a_pressure


def _initial_positions(
    num_particles: int, amplitude: float, generator: torch.Generator, dtype: torch.dtype
) -> Tensor:
    """A lattice displaced by a smooth periodic field of a few modes whose derivative stays
    below ``amplitude`` (so particles never cross)."""
    spacing = _BOX / num_particles
    lattice = -1 + spacing * (torch.arange(num_particles, dtype=dtype) + 0.5)
    modes = torch.arange(1, 5, dtype=dtype)
    coefficients = torch.randn(4, dtype=dtype, generator=generator) / modes
    phases = 2 * math.pi * torch.rand(4, dtype=dtype, generator=generator)
    slope = (coefficients.abs() * math.pi * modes).sum()
    displacement = torch.sin(math.pi * modes * lattice[:, None] + phases) @ coefficients
    return torch.remainder(lattice + amplitude * displacement / slope + 1, _BOX) - 1


def simulate_sph_1d(
    num_particles: int = 256,
    num_frames: int = 64,
    steps_per_frame: int = 4,
    neighbours: int = 12,
    amplitude: float = 0.3,
    kappa: float = 1.0,
    gamma: float = 1.4,
    viscosity: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> SPHTrajectory:
    r"""Run the 1-D compressible SPH solver and return ``num_frames`` frames.

    Args:
        num_particles: particles in :math:`[-1, 1)`; rest density 1, so
            :math:`m = 2 / N`.
        num_frames: frames returned (the first is the initial state).
        steps_per_frame: leapfrog steps between frames.
        neighbours: mean number of neighbours within the support: :math:`h =
            \text{neighbours} \cdot \Delta x / 2`.
        amplitude: largest slope of the initial displacement field, so the initial
            density ranges over about :math:`[1/(1+a), 1/(1-a)]`; below 0.5 (particles
            never cross).
        kappa, gamma: equation of state :math:`P = \kappa\rho^\gamma`.
        viscosity: Monaghan's :math:`\alpha` (:math:`\beta = 2\alpha`).
        seed: drives the initial displacement; equal seeds give identical runs.
    """
    if num_particles < 4 * neighbours:
        raise ValueError(
            f"num_particles ({num_particles}) must be at least 4 * neighbours ({neighbours})"
        )
    if not 0 <= amplitude < 0.5:
        raise ValueError(f"amplitude must be in [0, 0.5), got {amplitude!r}")
    generator = torch.Generator().manual_seed(seed)
    spacing = _BOX / num_particles
    mass = spacing  # rest density 1
    h = neighbours * spacing / 2
    x = _initial_positions(num_particles, amplitude, generator, dtype)
    v = torch.zeros_like(x)

    accelerations = functools.partial(
        _accelerations, mass=mass, h=h, kappa=kappa, gamma=gamma, viscosity=viscosity
    )

    frames: dict[str, list[Tensor]] = {k: [] for k in ("x", "v", "rho", "p", "a", "t")}
    t = 0.0
    a, density, pressure, a_pressure = accelerations(x, v)
    for frame in range(num_frames):
        for name, value in zip(
            ("x", "v", "rho", "p", "a"), (x, v, density, pressure, a_pressure), strict=True
        ):
            frames[name].append(value.clone())
        frames["t"].append(torch.tensor(t, dtype=dtype))
        if frame == num_frames - 1:
            break
        for _ in range(steps_per_frame):
            sound = torch.sqrt(gamma * pressure / density).max()
            dt = float(0.25 * h / (sound + v.abs().max()))
            v_half = v + 0.5 * dt * a
            x = torch.remainder(x + dt * v_half + 1, _BOX) - 1
            a, density, pressure, a_pressure = accelerations(x, v_half)
            v = v_half + 0.5 * dt * a
            t += dt
    stack = {k: torch.stack(v_) for k, v_ in frames.items()}
    return SPHTrajectory(
        positions=stack["x"][..., None],
        velocities=stack["v"],
        density=stack["rho"],
        pressure=stack["p"],
        pressure_acceleration=stack["a"],
        times=stack["t"],
        mass=mass,
        support=h,
    )
