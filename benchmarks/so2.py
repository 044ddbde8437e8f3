"""SO2Product vs ClebschGordanProduct (even paths, the same product for mapped weights):
forward + backward, per-edge weights, float32, one thread.

The SO(2) product gets its own weights (``weight_shape``), the CG product its paths'
weights; both with edge harmonics of random directions.  Three comparisons per row, each
in alternating blocks of back-to-back calls (``_common.block_median_times``): with a loss
(``out.square().sum()``, whose own cost both pay), with the output gradient given (the
products' own cost), and the SO(2) product's C kernel against its batched PyTorch kernel
(what CUDA and machines without a C compiler run), gradient given.
Writes results/so2.{json,md}.

    python benchmarks/so2.py [--lmax 2 3 4 6 8] [--edges 10000] [--channels 32 64]
                             [--repeats 3] [--repeats-low 7]
"""

from __future__ import annotations

import argparse
import json

import torch
from _common import (
    RESULTS,
    block_median_times,
    product_step,
    product_step_given,
    write_results,
)

from geobasis import o3
from geobasis.products import ClebschGordanProduct, SO2Product
from geobasis.products import so2 as so2_module


def pytorch_kernel(step):
    """``step`` with the SO(2) product's C kernel turned off."""

    def run() -> None:
        usable, so2_module.usable = so2_module.usable, lambda x: False
        try:
            step()
        finally:
            so2_module.usable = usable

    return run


def measure(lmax: int, c: int, edges: int, repeats: int) -> dict[str, object]:
    cg = ClebschGordanProduct(lmax, lmax, lmax, c, "external", paths="even")
    so2 = SO2Product(lmax, lmax, lmax, c, "external")
    x1 = torch.randn(edges, (lmax + 1) ** 2, c)
    sh = o3.spherical_harmonics(lmax, torch.randn(edges, 3), normalization="component")
    w_cg = torch.randn(edges, *cg.weight_shape)
    w_so2 = torch.randn(edges, *so2.weight_shape)
    loss = block_median_times(product_step(cg, x1, sh, w_cg), product_step(so2, x1, sh, w_so2),
                              repeats)  # fmt: skip
    given_so2 = product_step_given(so2, x1, sh, w_so2)
    given = block_median_times(product_step_given(cg, x1, sh, w_cg), given_so2, repeats)
    kernels = block_median_times(pytorch_kernel(given_so2), given_so2, repeats)
    return {"L": lmax, "edges": edges, "C": c,
            "CG ms (loss)": 1e3 * loss[0], "SO(2) ms (loss)": 1e3 * loss[1],
            "speed-up (loss)": loss[0] / loss[1],
            "CG ms (gradient given)": 1e3 * given[0], "SO(2) ms (gradient given)": 1e3 * given[1],
            "speed-up (gradient given)": given[0] / given[1],
            "C kernel vs PyTorch kernel": kernels[0] / kernels[1], "blocks": repeats,
            "CG weights": cg.weight_shape[0], "SO(2) weights": so2.weight_shape[0]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lmax", type=int, nargs="+", default=[2, 3, 4, 6, 8])
    parser.add_argument("--edges", type=int, default=10000)
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--repeats", type=int, default=3, help="blocks from L = 5 on")
    parser.add_argument("--repeats-low", type=int, default=7, help="blocks at L <= 4")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other (C, L) rows of results/so2.json")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for c, lmax in [(c, lmax) for c in args.channels for lmax in args.lmax]:
        repeats = args.repeats_low if lmax <= 4 else args.repeats
        rows.append(measure(lmax, c, args.edges, repeats))
        print(rows[-1], flush=True)
    notes = (f"{args.edges} edges, C = {', '.join(map(str, args.channels))}, float32, forward + backward, one thread, "
             f"medians over {args.repeats_low} blocks at L <= 4 and {args.repeats} above (fewer past 120 s) of three "
             "back-to-back calls, the first untimed, the two products' blocks alternated in one process "
             "(the steady state each has in a training loop; strictly alternated calls make each pay for "
             "the memory the other's multi-second calls freed, which this VM returns to its host). (loss): out.square().sum() backpropagated, its cost in both; "
             "(gradient given): out.backward(g) with a fixed g. The SO(2) product runs its C kernel "
             "(geobasis/products/_so2_product.c); 'C kernel vs PyTorch kernel' is the time of its batched "
             "PyTorch kernel (CUDA, no compiler) over the C kernel's, gradient given.")  # fmt: skip
    if args.merge and (RESULTS / "so2.json").exists():
        measured = {(r["C"], r["L"]) for r in rows}
        old = json.loads((RESULTS / "so2.json").read_text())["rows"]
        rows = sorted([r for r in old if (r["C"], r["L"]) not in measured] + rows,
                      key=lambda r: (r["C"], r["L"]))  # fmt: skip
        notes += f" Rows for (C, L) in {sorted(measured)} are from a later run."
    print(write_results("so2", rows, list(rows[0]), "SO(2) product vs CG", notes).read_text())


if __name__ == "__main__":
    main()
