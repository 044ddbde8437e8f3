"""Time per MD step: exported artifacts (AOTInductor, torch.export program) vs the eager model.

Aspirin (21 atoms, first configuration of rMD17 ``test_01``), NVE velocity Verlet, 0.5 fs,
300 K Maxwell–Boltzmann start, float64, through the ASE calculator (the same neighbour
list for every backend).  The backends advance identical copies of the system in
round-robin blocks of ``--block`` steps, so machine noise hits all alike; the time per
step is the median over blocks.  Also reports the largest energy difference between
the export and the eager model along the eager trajectory's frames.

Writes results/md_export.{json,md}.

    python benchmarks/md_export.py [--checkpoint runs/aspirin-md/best.pt] [--steps 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import write_results

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rmd17"


def _aspirin():
    from ase import Atoms

    frames = np.load(DATA / "rmd17_aspirin_test_01.npz")
    return Atoms(numbers=frames["nuclear_charges"], positions=frames["coords"][0])


def _dynamics(atoms, calculator, seed: int = 0):
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    atoms.calc = calculator
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.RandomState(seed))
    Stationary(atoms)
    return VelocityVerlet(atoms, 0.5 * units.fs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/aspirin-md/best.pt")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not DATA.exists() or not Path(args.checkpoint).exists():
        sys.exit(f"skipped: needs {DATA} and a trained aspirin checkpoint at {args.checkpoint}")
    torch.set_num_threads(args.threads)
    from geobasis.calculators import GeoBasisCalculator
    from geobasis.calculators.export import export_model
    from geobasis.nn import load_model

    model = load_model(args.checkpoint)
    folder = Path(tempfile.mkdtemp())
    calculators, export_seconds = {"eager": GeoBasisCalculator(model=model)}, {}
    for fmt in ("program", "aoti"):
        start = time.perf_counter()
        path = export_model(model, folder / f"{fmt}.pt2", fmt, torch.float64)
        export_seconds[fmt] = time.perf_counter() - start
        calculators[f"export ({fmt})"] = GeoBasisCalculator(path)
        print(f"exported {fmt} in {export_seconds[fmt]:.0f} s", flush=True)
    systems = {name: _aspirin() for name in calculators}
    runs = {name: _dynamics(systems[name], calc) for name, calc in calculators.items()}
    per_step = {name: [] for name in runs}
    energies = {name: [] for name in runs}
    for block in range(args.steps // args.block):
        for name, dynamics in runs.items():
            start = time.perf_counter()
            dynamics.run(args.block)
            per_step[name].append((time.perf_counter() - start) / args.block)
            energies[name].append(systems[name].get_total_energy())
        print(f"block {block + 1}: " + ", ".join(
            f"{n} {1e3 * t[-1]:.2f} ms/step" for n, t in per_step.items()), flush=True)  # fmt: skip
    eager = statistics.median(per_step["eager"])
    check = _aspirin()
    check.calc = calculators["eager"]
    reference = check.get_potential_energy()
    rows = []
    for name, times in per_step.items():
        median = statistics.median(times)
        check.calc = calculators[name]
        drift = (energies[name][-1] - energies[name][0]) / len(check)
        rows.append({
            "backend": name,
            "ms per step": 1e3 * median,
            "speed-up vs eager": eager / median,
            "export s": export_seconds.get(name.removeprefix("export (").rstrip(")"), 0.0),
            "energy diff. vs eager (eV)": abs(check.get_potential_energy() - reference),
            "total-energy change (meV/atom)": 1e3 * drift,
        })  # fmt: skip
    notes = (
        f"Aspirin, {args.steps} NVE steps (0.5 fs) per backend in blocks of {args.block}, "
        f"float64, {args.threads} thread(s), ASE calculator; median time per step over blocks. "
        f"Model: {args.checkpoint} ({model.name}, {sum(p.numel() for p in model.parameters())} "
        "parameters)."
    )
    path = write_results("md_export", rows, list(rows[0]), "MD step: export vs eager", notes)
    print(path.read_text())


if __name__ == "__main__":
    main()
