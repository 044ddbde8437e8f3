"""Equivariant products: geobasis vs e3nn 0.6 ``o3.TensorProduct``, same process.

The workload is the convolution of e3nn's ``gate_points_2101`` example: node features
``C x (0..L)`` (gathered per edge) times the edge spherical harmonics ``0..L`` with
per-edge weights from a radial network, 10,000 edges, float32, eager, one thread.

* e3nn ``uvu`` with the even paths (natural-parity outputs, as in gate_points) and with
  all paths (odd ones too);
* ``ClebschGordanProduct`` with the same paths and the same weights (identical results);
* ``GauntGridProduct`` / ``GauntFourierProduct`` with per-edge degree weights on both
  inputs and the output: the Gaunt-equivalent operation, compared with e3nn's even paths.

Forward (no grad) and forward+backward (backward of ``(y * g).sum()``) medians over
round-robin repeats after a warm-up, peak tensor memory of forward+backward, and
construction time.  Writes results/products.{json,md} and results/products_scaling.png.

    python benchmarks/products.py [--lmax 8] [--e3nn-lmax 4] [--channels 32 64]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _common import RESULTS, interleaved_median_times, peak_memory, write_results
from tqdm import tqdm

from geobasis.o3 import spherical_harmonics
from geobasis.products import (
    ClebschGordanProduct,
    GauntFourierProduct,
    GauntGridProduct,
    e3nn_equivalent,
)


def build(name: str, lmax: int, channels: int, device: torch.device):
    """(module or e3nn tp, call(x1, x2, w_cg, w_gaunt), construction seconds)."""
    start = time.perf_counter()
    if name.startswith("e3nn"):
        product = ClebschGordanProduct(
            lmax, lmax, lmax, channels, "external", paths=name.split("-")[1]
        )
        tp, in1, in2, out = e3nn_equivalent(product)
        tp = tp.to(device)
        seconds = time.perf_counter() - start

        def call(x1, x2, w_cg, w_gaunt):
            # e3nn's own layout in and out: conversions are not timed
            return tp(x1, x2, w_cg)

        return call, seconds, (in1, in2, len(product.paths))
    if name.startswith("cg"):
        module = ClebschGordanProduct(
            lmax, lmax, lmax, channels, "external", paths=name.split("-")[1]
        )
    elif name == "gaunt-grid":
        module = GauntGridProduct(lmax, lmax, lmax, channels, "external")
    else:
        module = GauntFourierProduct(lmax, lmax, lmax, channels, "external")
    module = module.to(device)
    seconds = time.perf_counter() - start
    gaunt = not name.startswith("cg")

    def call(x1, x2, w_cg, w_gaunt):
        return module(x1, x2, w_gaunt if gaunt else w_cg)

    return call, seconds, len(module.paths) if not gaunt else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--edges", type=int, default=10_000)
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--lmin", type=int, default=1, help="smallest L")
    parser.add_argument("--lmax", type=int, default=8, help="largest L for geobasis (C=32)")
    parser.add_argument("--lmax-wide", type=int, default=4, help="largest L for C>32")
    parser.add_argument("--e3nn-lmax", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--summary", action="store_true", help="only print the summary of results/products.json"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of results/products.json for (C, L) this run does not measure",
    )
    args = parser.parse_args()
    if args.summary:
        print(summary(json.loads((RESULTS / "products.json").read_text())["rows"]))
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    names = ["cg-even", "cg-all", "gaunt-grid", "gaunt-fourier"]
    jobs = [
        (c, l)
        for c in args.channels
        for l in range(args.lmin, (args.lmax if c == min(args.channels) else args.lmax_wide) + 1)
    ]
    rows = []
    for channels, lmax in tqdm(jobs, desc="products"):
        e = args.edges
        dim = (lmax + 1) ** 2
        gen = torch.Generator().manual_seed(lmax)
        x1 = torch.randn(e, dim, channels, generator=gen).to(device)
        x2 = spherical_harmonics(lmax, torch.randn(e, 3, generator=gen)).to(device)
        w_gaunt = torch.randn(e, 3 * (lmax + 1), channels, generator=gen).to(device)
        implementations = list(names)
        if lmax <= args.e3nn_lmax:
            implementations += ["e3nn-even", "e3nn-all"]
        calls, built = {}, {}
        inputs = {}
        for name in implementations:
            call, seconds, extra = build(name, lmax, channels, device)
            built[name] = seconds
            if name.startswith("e3nn"):
                in1, in2, paths = extra
                w = torch.randn(e, paths * channels, generator=gen).to(device)
                inputs[name] = (in1(x1), in2(x2), w, None)
            elif name.startswith("cg"):
                w = torch.randn(e, extra, channels, generator=gen).to(device)
                inputs[name] = (x1, x2, w, None)
            else:
                inputs[name] = (x1, x2, None, w_gaunt)
            calls[name] = call

        def forward(name):
            def run():
                with torch.no_grad():
                    calls[name](*inputs[name])
                sync()

            return run

        def forward_backward(name):
            leaves = [None if t is None else t.clone().requires_grad_() for t in inputs[name]]
            with torch.no_grad():
                cotangent = torch.randn_like(calls[name](*leaves))

            def run():
                (calls[name](*leaves) * cotangent).sum().backward()
                sync()

            return run

        fwd = interleaved_median_times({n: forward(n) for n in implementations}, args.repeats)
        both = interleaved_median_times(
            {n: forward_backward(n) for n in implementations}, args.repeats
        )
        for name in implementations:
            row = {
                "L": lmax,
                "C": channels,
                "implementation": name,
                "build_s": built[name],
                "forward_ms": 1e3 * fwd[name],
                "forward_backward_ms": 1e3 * both[name],
                "peak_MiB": peak_memory(forward_backward(name), device) / 2**20,
            }
            reference = {"cg-all": "e3nn-all"}.get(name, "e3nn-even")
            if reference in fwd and not name.startswith("e3nn"):
                row["speedup_forward"] = fwd[reference] / fwd[name]
                row["speedup_forward_backward"] = both[reference] / both[name]
            rows.append(row)
        tqdm.write(
            f"C={channels} L={lmax}: "
            + ", ".join(f"{n} {1e3 * both[n]:.0f} ms" for n in implementations)
        )

    suffix = "" if device.type == "cpu" else f"_{device.type}"
    if args.merge and (RESULTS / f"products{suffix}.json").exists():
        measured = {(r["C"], r["L"]) for r in rows}
        old = json.loads((RESULTS / f"products{suffix}.json").read_text())["rows"]
        rows = [r for r in old if (r["C"], r["L"]) not in measured] + rows
        rows.sort(key=lambda r: (r["C"], r["L"]))
        kept = sorted({(r["C"], r["L"]) for r in rows} - measured)
        args.merge_note = f"  Rows for (C, L) in {kept} are from an earlier run."
    columns = [
        "L",
        "C",
        "implementation",
        "forward_ms",
        "forward_backward_ms",
        "speedup_forward",
        "speedup_forward_backward",
        "peak_MiB",
        "build_s",
    ]
    notes = (
        f"{args.edges} edges, float32, {device.type}, per-edge weights.  speedup = e3nn time / "
        "ours (cg-all vs e3nn-all; the others vs e3nn-even: the same even-path operation, "
        "for Gaunt with Gaunt path weights).  Medians of round-robin repeats after warm-up."
    ) + getattr(args, "merge_note", "")
    path = write_results(f"products{suffix}", rows, columns, "Equivariant products", notes)
    with path.open("a") as f:
        f.write("\n" + summary(rows) + "\n")
    plot(rows, RESULTS / f"products_scaling{suffix}.png", min(args.channels))
    print(path.read_text())


def summary(rows: list[dict]) -> str:
    """Forward+backward ms and speed-up over e3nn, one line per (C, L)."""
    table = {(r["C"], r["L"], r["implementation"]): r for r in rows}
    lines = [
        "| C | L | e3nn even | CG even | e3nn all | CG all | Gaunt grid | Gaunt FFT |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c, l in sorted({(r["C"], r["L"]) for r in rows}):
        cells = []
        for name in ("e3nn-even", "cg-even", "e3nn-all", "cg-all", "gaunt-grid", "gaunt-fourier"):
            row = table.get((c, l, name))
            if row is None:
                cells.append("–")
                continue
            cell = f"{row['forward_backward_ms']:,.0f}"
            if "speedup_forward_backward" in row:
                cell += f" (**{row['speedup_forward_backward']:.1f}x**)"
            cells.append(cell)
        lines.append(f"| {c} | {l} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path, channels: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    styles = {
        "e3nn-all": ("k", "--", "e3nn uvu, all paths"),
        "e3nn-even": ("grey", "--", "e3nn uvu, even paths"),
        "cg-all": ("C0", "-", "ClebschGordanProduct, all paths"),
        "cg-even": ("C1", "-", "ClebschGordanProduct, even paths"),
        "gaunt-grid": ("C2", "-", "GauntGridProduct"),
        "gaunt-fourier": ("C3", "-", "GauntFourierProduct"),
    }
    for name, (color, line, label) in styles.items():
        pts = sorted(
            (r["L"], r["forward_backward_ms"])
            for r in rows
            if r["implementation"] == name and r["C"] == channels
        )
        if pts:
            ax.plot(*zip(*pts, strict=True), line, marker="o", color=color, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ls = sorted({r["L"] for r in rows})
    ax.set_xticks(ls, [str(l) for l in ls])
    ax.set_xlabel("L (all inputs and output 0..L)")
    ax.set_ylabel("forward + backward [ms]")
    ax.set_title(f"10k edges, C = {channels}, float32, one CPU thread")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
