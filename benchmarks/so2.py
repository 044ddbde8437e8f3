"""SO2Product vs ClebschGordanProduct (even paths, the same product for mapped weights):
forward + backward, per-edge weights, float32, one thread.

The SO(2) product gets its own weights (``weight_shape``), the CG product its paths'
weights; both with edge harmonics of random directions.  Writes results/so2.{json,md}.

    python benchmarks/so2.py [--lmax 2 3 4 6 8] [--edges 2000] [--channels 32 64]
                             [--repeats 5] [--repeats-low 21]
"""

from __future__ import annotations

import argparse

import torch
from _common import paired_median_times, product_step, write_results

from geobasis import o3
from geobasis.products import ClebschGordanProduct, SO2Product


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lmax", type=int, nargs="+", default=[2, 3, 4, 6, 8])
    parser.add_argument("--edges", type=int, default=2000)
    parser.add_argument("--channels", type=int, nargs="+", default=[32])
    parser.add_argument("--repeats", type=int, default=5, help="pairs timed from L = 5 on")
    parser.add_argument("--repeats-low", type=int, default=21, help="pairs timed at L <= 4")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for c, lmax in [(c, lmax) for c in args.channels for lmax in args.lmax]:
        cg = ClebschGordanProduct(lmax, lmax, lmax, c, "external", paths="even")
        so2 = SO2Product(lmax, lmax, lmax, c, "external")
        x1 = torch.randn(args.edges, (lmax + 1) ** 2, c)
        sh = o3.spherical_harmonics(lmax, torch.randn(args.edges, 3), normalization="component")
        w_cg = torch.randn(args.edges, *cg.weight_shape)
        w_so2 = torch.randn(args.edges, *so2.weight_shape)
        repeats = args.repeats_low if lmax <= 4 else args.repeats
        t_cg, t_so2 = paired_median_times(
            product_step(cg, x1, sh, w_cg), product_step(so2, x1, sh, w_so2), repeats, warmup=1
        )
        rows.append({"L": lmax, "edges": args.edges, "C": c, "CG ms": 1e3 * t_cg,
                     "SO(2) ms": 1e3 * t_so2, "SO(2) speed-up": t_cg / t_so2, "pairs": repeats,
                     "CG weights": cg.weight_shape[0], "SO(2) weights": so2.weight_shape[0]})  # fmt: skip
        print(rows[-1], flush=True)
    notes = (f"{args.edges} edges, C = {', '.join(map(str, args.channels))}, float32, forward + backward, one thread, "
             f"median of {args.repeats_low} pairs at L <= 4 and {args.repeats} above, after warm-up, "
             "CG and SO(2) alternated in one process.")  # fmt: skip
    print(write_results("so2", rows, list(rows[0]), "SO(2) product vs CG", notes).read_text())


if __name__ == "__main__":
    main()
