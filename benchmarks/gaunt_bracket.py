"""The parity-complete grid product (Gaunt + Poisson bracket) vs the CG product, all paths.

``GauntBracketProduct(paths="all")`` and ``ClebschGordanProduct(paths="all")`` (and the
odd paths alone), forward + backward, per-edge weights, edge harmonics as ``x2``, float32,
one thread, alternated in one process.  Writes results/gaunt_bracket.{json,md}.

    python benchmarks/gaunt_bracket.py [--lmax 2 3 4 6 8] [--edges 2000] [--channels 32]
"""

from __future__ import annotations

import argparse

import torch
from _common import paired_median_times, product_step, write_results

from geobasis import o3
from geobasis.products import ClebschGordanProduct, GauntBracketProduct


def _pair(paths: str, lmax: int, edges: int, c: int) -> dict:
    cg = ClebschGordanProduct(lmax, lmax, lmax, c, "external", paths=paths)
    grid = GauntBracketProduct(lmax, lmax, lmax, c, "external", paths=paths)
    x1 = torch.randn(edges, (lmax + 1) ** 2, c)
    sh = o3.spherical_harmonics(lmax, torch.randn(edges, 3), normalization="component")
    w_cg = torch.randn(edges, *cg.weight_shape)
    w_grid = torch.randn(edges, *grid.weight_shape)
    t_cg, t_grid = paired_median_times(
        product_step(cg, x1, sh, w_cg), product_step(grid, x1, sh, w_grid), repeats=5, warmup=1
    )
    return {"paths": paths, "L": lmax, "edges": edges, "C": c, "CG ms": 1e3 * t_cg,
            "grid ms": 1e3 * t_grid, "grid speed-up": t_cg / t_grid,
            "CG paths": len(cg.paths), "grid weights": grid.weight_shape[0]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lmax", type=int, nargs="+", default=[2, 3, 4, 6, 8])
    parser.add_argument("--edges", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for paths in ("all", "odd"):
        for lmax in args.lmax:
            rows.append(_pair(paths, lmax, args.edges, args.channels))
            print(rows[-1], flush=True)
    notes = (f"{args.edges} edges, C = {args.channels}, float32, forward + backward, one "
             "thread, median of 5 after warm-up, alternated in one process; x2 = edge "
             "harmonics (one channel).  The grid product has per-degree weights (the CG "
             "product one weight per path): it spans the same paths with factorised "
             "weights.")  # fmt: skip
    title = "Parity-complete grid product (Gaunt + Poisson bracket) vs CG"
    print(write_results("gaunt_bracket", rows, list(rows[0]), title, notes).read_text())


if __name__ == "__main__":
    main()
