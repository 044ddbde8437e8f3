"""Spherical Bessel radial basis at small distances: geobasis vs PyG's closed forms.

DimeNet-style implementations evaluate j_l(x) from closed forms such as
j_1 = sin x / x^2 - cos x / x, which cancel catastrophically for small x.  This script
compares, in float32, geobasis' SphericalBesselBasis, PyG's DimeNet radial functions (the
SymPy closed forms of ``torch_geometric.nn.models.dimenet_utils``, exactly as PyG builds
them) and the naive upward recurrence, each against its own definition in float64, and
saves a plot.

    python examples/spherical_bessel_stability.py   # writes spherical_bessel_stability.png
"""

import numpy as np
import torch
from scipy.special import spherical_jn

from geobasis.radial import SphericalBesselBasis


def pyg_closed_forms(lmax: int):
    """PyG's normalised j_l(z_l1 x) for the first root, as SymPy expressions lambdified."""
    import sympy as sym
    from torch_geometric.nn.models.dimenet_utils import bessel_basis

    formulas, x = bessel_basis(lmax + 1, 1), sym.symbols("x")
    return [sym.lambdify([x], formulas[l][0], {"sin": torch.sin, "cos": torch.cos})
            for l in range(lmax + 1)]  # fmt: skip


def closed_form_j(l: int, x: torch.Tensor) -> torch.Tensor:
    """j_l by the upward recurrence from the closed forms of j_0 and j_1 (float32)."""
    j0 = torch.sin(x) / x
    j1 = torch.sin(x) / x**2 - torch.cos(x) / x
    prev, cur = j0, j1
    for n in range(1, l):
        prev, cur = cur, (2 * n + 1) / x * cur - prev
    return j0 if l == 0 else cur


cutoff, lmax = 5.0, 6
basis = SphericalBesselBasis(lmax, 1, cutoff)
x = torch.logspace(-5, np.log10(0.9), 400)  # up to the first zero (at r = cutoff)
ours = basis(x * cutoff)[:, :, 0].double() / basis.norm[:, 0]
pyg = pyg_closed_forms(lmax)
rows = []
for l in range(lmax + 1):
    z = float(basis.roots[l, 0])
    exact = spherical_jn(l, z * (x * cutoff).double().numpy() / cutoff)
    naive = closed_form_j(l, (x * z)).double().numpy()
    rel_ours = np.abs(ours[:, l].numpy() - exact) / np.abs(exact)
    rel_naive = np.abs(naive - exact) / np.abs(exact)
    theirs, theirs64 = pyg[l](x).double().numpy(), pyg[l](x.double()).numpy()
    rel_pyg = np.abs(theirs - theirs64) / np.abs(theirs64)
    rows.append((l, rel_ours, rel_naive, rel_pyg))
    print(
        f"l={l}: max relative error, geobasis {np.nanmax(rel_ours):.1e}, PyG closed forms "
        f"{np.nanmax(rel_pyg):.1e}, naive recurrence {np.nanmax(rel_naive):.1e}"
    )

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for (l, rel_ours, rel_naive, rel_pyg), color in zip(
        rows[2::2], "C0 C1 C2".split(), strict=True
    ):
        ax.loglog(x.numpy(), np.maximum(rel_pyg, 1e-9), "-", color=color, lw=1.6,
                  label=f"PyG DimeNet closed form, l={l}")  # fmt: skip
        ax.loglog(x.numpy(), np.maximum(rel_naive, 1e-9), ":", color=color, lw=1,
                  label=f"naive upward recurrence, l={l}")  # fmt: skip
        ax.loglog(x.numpy(), np.maximum(rel_ours, 1e-9), "--", color="k", lw=0.8,
                  label="geobasis (all l)" if l == 2 else None)  # fmt: skip
    ax.set_xlabel("r / cutoff")
    ax.set_ylabel("relative error in float32")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig("spherical_bessel_stability.png", dpi=120)
    print("wrote spherical_bessel_stability.png")
except ImportError:
    print("install matplotlib for the plot")
