"""Molecular dynamics with a trained potential (``geobasis md``): NVE or Langevin.

Reports the total-energy drift of NVE runs: the slope of a linear fit of the total
energy per atom against time (meV/atom/ps), and the largest excursion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

__all__ = ["run_md"]


def run_md(
    checkpoint: str | Path,
    structure: str = "ethanol",
    ensemble: str = "nve",
    temperature: float = 300.0,
    timestep_fs: float = 0.5,
    time_ps: float = 1.0,
    seed: int = 0,
    trajectory: str | Path | None = None,
    log_every: int = 20,
    progress: bool = True,
    allow_unseen: bool = False,
) -> dict:
    """Run MD from ``structure`` (an ``ase.build.molecule`` name or a file ASE reads).

    Velocities start from a Maxwell–Boltzmann distribution at ``temperature``.  Returns
    the times (ps) and energies (eV) sampled every ``log_every`` steps, and for NVE the
    drift in meV/atom/ps.
    """
    from ase import units
    from ase.build import molecule
    from ase.io import read
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from ase.md.verlet import VelocityVerlet

    from geobasis.calculators.ase import GeoBasisCalculator

    if ensemble not in ("nve", "langevin"):
        raise ValueError(f"ensemble must be 'nve' or 'langevin', got {ensemble!r}")
    path = Path(structure)
    if path.exists():
        atoms = read(path)
    else:
        atoms = molecule("CH3CH2OH" if structure == "ethanol" else structure)
    atoms.calc = GeoBasisCalculator(checkpoint, allow_unseen=allow_unseen)
    rng = np.random.RandomState(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    step = timestep_fs * units.fs
    if ensemble == "nve":
        dynamics = VelocityVerlet(atoms, step)
    else:
        dynamics = Langevin(
            atoms, step, temperature_K=temperature, friction=0.01 / units.fs, fixcm=False, rng=rng
        )
    if trajectory is not None:
        from ase.io.trajectory import Trajectory

        dynamics.attach(Trajectory(str(trajectory), "w", atoms).write, interval=log_every)
    steps = int(round(time_ps * 1000 / timestep_fs))
    times, total, potential = [], [], []
    for start in tqdm(range(0, steps, log_every), desc=f"MD {ensemble}", disable=not progress):
        times.append(start * timestep_fs / 1000)
        potential.append(atoms.get_potential_energy())
        total.append(potential[-1] + atoms.get_kinetic_energy())
        dynamics.run(min(log_every, steps - start))
    times.append(steps * timestep_fs / 1000)
    potential.append(atoms.get_potential_energy())
    total.append(potential[-1] + atoms.get_kinetic_energy())
    t, e = np.array(times), np.array(total) / len(atoms)
    report = {
        "ensemble": ensemble,
        "atoms": len(atoms),
        "time_ps": float(t[-1]),
        "steps": steps,
        "final_temperature_K": float(atoms.get_temperature()),
        "times_ps": t.tolist(),
        "total_energy_eV": list(map(float, total)),
        "potential_energy_eV": list(map(float, potential)),
    }
    if ensemble == "nve":
        slope = np.polyfit(t, e, 1)[0] if len(t) > 1 else 0.0
        report["drift_meV_per_atom_per_ps"] = 1e3 * float(slope)
        report["max_excursion_meV_per_atom"] = 1e3 * float(np.abs(e - e[0]).max())
    return report
