"""Spherical harmonics: geobasis vs e3nn 0.6, same process, same inputs.

100,000 random vectors, lmax 2..12, float32 and float64, forward and forward+backward
(the backward of ``(Y * W).sum()`` for a random ``W``, as in a real model), eager mode,
one thread by default.  Writes results/spherical_harmonics.{json,md,png}.

    python benchmarks/spherical_harmonics.py [--threads 1] [--vectors 100000]
"""

from __future__ import annotations

import argparse

import torch
from _common import RESULTS, paired_median_times, write_results
from e3nn import o3 as e3o3
from tqdm import tqdm

from geobasis.o3 import spherical_harmonics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--lmax", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 10, 12])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    jobs = [(dtype, l) for dtype in (torch.float32, torch.float64) for l in args.lmax]
    for dtype, lmax in tqdm(jobs, desc="spherical harmonics"):
        x = torch.randn(args.vectors, 3, dtype=dtype, device=device, generator=None)
        w = torch.randn(args.vectors, (lmax + 1) ** 2, dtype=dtype, device=device)
        ls = list(range(lmax + 1))
        implementations = {
            "ours": lambda v: spherical_harmonics(lmax, v),
            "e3nn": lambda v: e3o3.spherical_harmonics(ls, v, True, normalization="integral"),
        }

        def forward(fn):
            def run():
                with torch.no_grad():
                    fn(x)
                sync()

            return run

        def forward_backward(fn):
            xr = x.clone().requires_grad_(True)

            def run():
                (fn(xr) * w).sum().backward()
                sync()

            return run

        def gradient_given(fn):  # the same gradient, without the loss's own [N, D] work
            xr = x.clone().requires_grad_(True)

            def run():
                fn(xr).backward(w)
                sync()

            return run

        with torch.no_grad():
            err = float((implementations["ours"](x) - implementations["e3nn"](x)).abs().max())
        row = {"dtype": str(dtype).replace("torch.", ""), "lmax": lmax, "max |ours - e3nn|": err}
        modes = (("fwd", forward), ("fwd+bwd", forward_backward), ("Y.backward(W)", gradient_given))
        for mode, wrap in modes:
            t_ours, t_e3nn = paired_median_times(  # 61 pairs for the fast cases: the VM is noisy
                wrap(implementations["ours"]),
                wrap(implementations["e3nn"]),
                repeats=61,
                budget=20.0,
            )
            row[f"{mode} ours ms"] = t_ours * 1e3
            row[f"{mode} e3nn ms"] = t_e3nn * 1e3
            row[f"{mode} speed-up"] = t_e3nn / t_ours
        rows.append(row)
    columns = [
        "dtype",
        "lmax",
        "fwd ours ms",
        "fwd e3nn ms",
        "fwd speed-up",
        "fwd+bwd ours ms",
        "fwd+bwd e3nn ms",
        "fwd+bwd speed-up",
        "Y.backward(W) ours ms",
        "Y.backward(W) e3nn ms",
        "Y.backward(W) speed-up",
        "max |ours - e3nn|",
    ]
    notes = (
        f"{args.vectors:,} random vectors on {device}, median of up to 61 runs (at most 20 s per cell) after 3 warm-ups, the two libraries timed alternately; "
        "speed-up = e3nn time / geobasis time (higher is better); fwd+bwd is the backward of (Y * W).sum(); "
        "Y.backward(W) is the same forward and gradient without the loss (its [N, (lmax+1)^2] "
        "product and gradient cost both libraries the same, 1-5 ms at 100k vectors)."
    )
    print(
        write_results(
            "spherical_harmonics", rows, columns, "Spherical harmonics vs e3nn", notes
        ).read_text()
    )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for dtype in ("float32", "float64"):
            sel = [r for r in rows if r["dtype"] == dtype]
            ax.plot(
                [r["lmax"] for r in sel],
                [r["fwd+bwd ours ms"] for r in sel],
                "o-",
                label=f"geobasis {dtype}",
            )
            ax.plot(
                [r["lmax"] for r in sel],
                [r["fwd+bwd e3nn ms"] for r in sel],
                "s--",
                label=f"e3nn {dtype}",
            )
        ax.set_xlabel("lmax")
        ax.set_ylabel("forward+backward time [ms]")
        ax.set_yscale("log")
        ax.set_title(f"Spherical harmonics, {args.vectors:,} vectors, {args.threads} thread(s)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "spherical_harmonics.png", dpi=120)
    except ImportError:
        print("matplotlib not installed: no plot")


if __name__ == "__main__":
    main()
