"""Radial bases: geobasis vs PyG's DimeNet layers, speed and accuracy, same process.

* Bessel basis: ``geobasis.radial.BesselBasis`` vs PyG ``BesselBasisLayer`` (its sines;
  PyG multiplies in its envelope, which is timed separately as ``PolynomialEnvelope``).
* Spherical Bessel basis (radial part of DimeNet's spherical basis): geobasis'
  stable ``SphericalBesselBasis`` vs the SymPy closed forms that PyG's
  ``SphericalBasisLayer`` evaluates, in float32; accuracy is measured against SciPy
  in float64 at the same inputs, including small distances.

    python benchmarks/radial.py [--edges 100000] [--threads 1]
"""

from __future__ import annotations

import argparse
from functools import lru_cache

import numpy as np
import torch
from _common import median_time, paired_median_times, write_results
from scipy.special import spherical_jn
from tqdm import tqdm

from geobasis.radial import BesselBasis, PolynomialEnvelope, SphericalBesselBasis


@lru_cache(maxsize=8)
def pyg_spherical_bessel(lmax: int, num_basis: int):
    """PyG's radial functions of ``SphericalBasisLayer`` (SymPy closed forms; building
    them takes SymPy tens of seconds at lmax 8, so they are cached)."""
    import sympy as sym
    from torch_geometric.nn.models.dimenet_utils import bessel_basis

    formulas = bessel_basis(lmax + 1, num_basis)
    x = sym.symbols("x")
    funcs = [
        [
            sym.lambdify([x], formulas[l][n], {"sin": torch.sin, "cos": torch.cos})
            for n in range(num_basis)
        ]
        for l in range(lmax + 1)
    ]

    def evaluate(d: torch.Tensor) -> torch.Tensor:
        out = []
        for l in range(lmax + 1):
            for n in range(num_basis):
                value = funcs[l][n](d)
                out.append(value if torch.is_tensor(value) else torch.full_like(d, float(value)))
        return torch.stack(out, -1).view(*d.shape, lmax + 1, num_basis)

    return evaluate


def gradient_call(fn, values: torch.Tensor):
    """``fn(values)`` and its gradient to ``values`` for an all-ones output gradient."""
    leaf = values.detach().clone().requires_grad_(True)
    ones = torch.ones_like(fn(leaf))

    def run():
        torch.autograd.grad(fn(leaf), leaf, ones)

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edges", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from torch_geometric.nn.models.dimenet import BesselBasisLayer

    cutoff = 5.0
    r = torch.rand(args.edges) * cutoff
    rows = []
    tasks = [
        ("bessel", 8, 0),
        ("spherical_bessel", 6, 3),
        ("spherical_bessel", 6, 6),
        ("spherical_bessel", 8, 8),
    ]
    for kind, num_basis, lmax in tqdm(tasks, desc="radial bases"):
        if kind == "bessel":
            ours = BesselBasis(num_basis, cutoff)
            theirs = BesselBasisLayer(num_basis, cutoff)
            f_ours = lambda: ours(r)
            f_theirs = lambda: theirs(r)
            name = f"Bessel (DimeNet), n={num_basis}"
            err_ours = err_theirs = float("nan")
        else:
            ours = SphericalBesselBasis(lmax, num_basis, cutoff)
            theirs = pyg_spherical_bessel(lmax, num_basis)
            x = r / cutoff
            f_ours = lambda: ours(r)
            f_theirs = lambda: theirs(x)
            name = f"spherical Bessel, lmax={lmax}, n={num_basis}"
            # accuracy on x = r/c in [1e-6, 1], float32, against SciPy float64 (same inputs)
            xs = torch.logspace(-6, 0, 2000)
            r_in = xs * cutoff  # the float32 distances fed to both
            x_exact = r_in.double().numpy() / cutoff
            ref = np.stack(
                [
                    [spherical_jn(l, float(ours.roots[l, n]) * x_exact) for n in range(num_basis)]
                    for l in range(lmax + 1)
                ]
            ).transpose(2, 0, 1)
            scale = np.abs(ref).max(0, keepdims=True)
            mask = (np.abs(ref) > 1e-4 * scale) & (np.abs(ref) > np.finfo(np.float32).tiny)
            mine = (ours(r_in).double() / ours.norm).numpy()
            with torch.no_grad():
                pyg = theirs(r_in / cutoff).double().numpy()
            err_ours = float(np.max(np.abs(mine - ref)[mask] / np.abs(ref)[mask]))
            # relative error of PyG's values against its own definition evaluated in float64
            with torch.no_grad():
                pyg64 = theirs(torch.from_numpy(x_exact)).numpy()
            err_theirs = float(np.max(np.abs(pyg - pyg64)[mask] / np.abs(pyg64)[mask]))
        with torch.no_grad():
            t_ours, t_theirs = paired_median_times(f_ours, f_theirs, repeats=21)
        # forward + backward to the distances (how the models call them, for forces)
        g_ours = gradient_call(ours, r)
        g_theirs = gradient_call(theirs, r if kind == "bessel" else x)
        t_ours_grad, t_theirs_grad = paired_median_times(g_ours, g_theirs, repeats=21)
        rows.append(
            {
                "basis": name,
                "geobasis ms": t_ours * 1e3,
                "PyG ms": t_theirs * 1e3,
                "speed-up": t_theirs / t_ours,
                "geobasis fwd+bwd ms": t_ours_grad * 1e3,
                "PyG fwd+bwd ms": t_theirs_grad * 1e3,
                "speed-up fwd+bwd": t_theirs_grad / t_ours_grad,
                "geobasis max rel. error (f32)": err_ours,
                "PyG max rel. error (f32)": err_theirs,
            }
        )
    env = PolynomialEnvelope(cutoff)
    rows.append(
        {"basis": "PolynomialEnvelope(p=6)", "geobasis ms": median_time(lambda: env(r)) * 1e3}
    )
    columns = [
        "basis",
        "geobasis ms",
        "PyG ms",
        "speed-up",
        "geobasis fwd+bwd ms",
        "PyG fwd+bwd ms",
        "speed-up fwd+bwd",
        "geobasis max rel. error (f32)",
        "PyG max rel. error (f32)",
    ]
    notes = (
        f"{args.edges:,} distances in [0, 5) Å, float32, {args.threads} thread(s); speed-up = PyG / geobasis "
        "(forward alone, and forward + backward to the distances). "
        "Errors: largest relative error over x = r/c in [1e-6, 1] (away from the zeros of j_l) of float32 values "
        "against the same function in float64 (SciPy for geobasis; PyG's own SymPy formulas for PyG)."
    )
    print(write_results("radial", rows, columns, "Radial bases vs PyG DimeNet", notes).read_text())


if __name__ == "__main__":
    main()
