"""Symmetric contraction speed: the Gaunt grid against the complete CG basis.

Correlation 3 (body order 4), atomic basis of degrees ``0..L`` for L = 1..4, output
degrees ``0..1`` (MACE's ``max_L = 1``), C = 32 channels, 512 atoms of 3 species, float32,
one thread.  Two timings, medians over alternating repeats after a warm-up:

* ``fwd+bwd``: forward and backward to the input and the weights;
* ``force step``: forward, the gradient to the input with ``create_graph`` (what a force
  loss differentiates), and the backward of that gradient (a training step's pattern).

Also the basis sizes: CG elements / monomials used, and the Gaunt grid's points.
Writes results/contraction.{json,md}.

    python benchmarks/contraction.py [--atoms 512] [--channels 32]
"""

from __future__ import annotations

import argparse
import json

import torch
from _common import RESULTS, environment, paired_median_times

from geobasis.nn.contraction import CGContraction, GauntGridContraction


def _step(module, x, species, force: bool):
    def run():
        module.zero_grad(set_to_none=True)
        x.grad = None
        out = module(x, species)
        if force:
            (grad,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
            grad.square().sum().backward()
        else:
            out.square().sum().backward()

    return run


def measure(lmax: int, atoms: int, channels: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(atoms, (lmax + 1) ** 2, channels, generator=generator, requires_grad=True)
    species = torch.randint(0, 3, (atoms,), generator=generator)
    cg = CGContraction(lmax, 1, channels, correlation=3, num_species=3)
    grid = GauntGridContraction(lmax, 1, channels, correlation=3, num_species=3)
    row = {"L": lmax, "cg_elements": sum(w.shape[1] for w in cg.weights),
           "cg_monomials": sum(getattr(cg, f"monomials_{nu}").shape[0] for nu in (1, 2, 3)),
           "grid_points": grid.to_grid.shape[0]}  # fmt: skip
    for name, force in (("fwd_bwd", False), ("force_step", True)):
        t_cg, t_grid = paired_median_times(_step(cg, x, species, force),
                                           _step(grid, x, species, force), repeats=9)  # fmt: skip
        row[f"{name}_cg_ms"], row[f"{name}_grid_ms"] = 1e3 * t_cg, 1e3 * t_grid
        row[f"{name}_cg_over_grid"] = t_cg / t_grid
    print(row, flush=True)
    return row


def markdown(rows: list[dict], atoms: int, channels: int) -> str:
    lines = [
        "## Symmetric contraction: Gaunt grid vs CG (correlation 3)",
        "",
        f"{atoms} atoms, C = {channels}, output degrees 0..1, float32, 1 thread; medians of "
        "alternating repeats. Force step = forward + gradient with create_graph + its backward.",
        "",
        "| L | CG elements | CG monomials | grid points | fwd+bwd CG ms | grid ms | CG / grid "
        "| force step CG ms | grid ms | CG / grid |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['L']} | {r['cg_elements']} | {r['cg_monomials']} | {r['grid_points']} | "
            f"{r['fwd_bwd_cg_ms']:.1f} | {r['fwd_bwd_grid_ms']:.1f} | "
            f"{r['fwd_bwd_cg_over_grid']:.2f} | {r['force_step_cg_ms']:.1f} | "
            f"{r['force_step_grid_ms']:.1f} | {r['force_step_cg_over_grid']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=512)
    parser.add_argument("--channels", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(lmax, args.atoms, args.channels) for lmax in (1, 2, 3, 4)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "contraction", "rows": rows, "environment": environment()}
    (RESULTS / "contraction.json").write_text(json.dumps(payload, indent=2))
    (RESULTS / "contraction.md").write_text(markdown(rows, args.atoms, args.channels))


if __name__ == "__main__":
    main()
