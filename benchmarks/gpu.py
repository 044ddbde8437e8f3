"""The GPU table: harmonics, products and a training step on CUDA against e3nn (and
cuEquivariance's channelwise tensor product when it is installed).

Every timing is a median over repeats after a warm-up, with ``torch.cuda.synchronize``
around each call (CPU: plain wall time), forward + backward of ``(y * g).sum()``:

* spherical harmonics ``0..L`` of E edge vectors, L = 1..6, against e3nn;
* the convolution product ``C x (0..L)`` times the edge harmonics ``0..L`` with per-edge
  weights: CG (even paths), Gaunt grid, SO(2) against e3nn's ``uvu`` TensorProduct with
  the same paths and weights, and cuEquivariance's ``ChannelWiseTensorProduct`` (skipped
  with a message when ``cuequivariance_torch`` cannot be imported), L = 1..6, E edges;
* a training step (energy, forces with ``create_graph``, backward) of ``Potential`` and
  ``ManyBodyPotential`` on batches of random 21-atom molecules;
* the Bessel and spherical Bessel radial bases against PyG's DimeNet forms (forward, and
  forward + backward to the distances), E distances.

``--sections`` picks tables (default: all).

``--dry-run`` runs the same code on the CPU with tiny sizes (what the tests and CI can
check without a GPU).  Writes ``gpu.json`` and ``gpu.md`` into ``--out``.

    python benchmarks/gpu.py --out benchmarks/results/gpu [--edges 100000 1000000] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial
from importlib.metadata import version
from pathlib import Path

import torch

from geobasis.o3 import SphericalHarmonics, spherical_harmonics
from geobasis.products import ClebschGordanProduct, e3nn_equivalent, make


def timed(fn, device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fwd_bwd(call, inputs: list[torch.Tensor]):
    def run():
        for t in inputs:
            t.grad = None
        y = call(*inputs)
        y.backward(torch.ones_like(y))

    return run


def harmonics_rows(edges: int, lmaxes, device, repeats: int) -> list[dict]:
    """Harmonics 0..L fwd+bwd: geobasis (its dispatch), both of its forms (monomial GEMM and
    recurrence, to place the switch on this device), e3nn and cuEquivariance."""
    from e3nn import o3

    rows = []
    vectors = torch.randn(edges, 3, device=device, requires_grad=True)
    for lmax in lmaxes:
        module = SphericalHarmonics(lmax).to(device)
        calls = {
            "geobasis": lambda v: spherical_harmonics(lmax, v),
            "monomials": module._monomials,
            "recurrence": module._recurrence,
            "e3nn": lambda v: o3.spherical_harmonics(list(range(lmax + 1)), v, True),
        }
        try:
            import cuequivariance_torch as cuet

            calls["cuequivariance"] = cuet.SphericalHarmonics(list(range(lmax + 1))).to(device)
        except ImportError:
            pass
        row = {"what": "harmonics", "L": lmax, "E": edges}
        for name, call in calls.items():
            try:
                row[f"{name}_ms"] = 1e3 * timed(fwd_bwd(call, [vectors]), device, repeats)
            except Exception as error:  # noqa: BLE001 - recorded, the other columns go on
                row[f"{name}_error"] = f"{type(error).__name__}: {error}"[:200]
        row["e3nn_over_geobasis"] = row.get("e3nn_ms", float("nan")) / row["geobasis_ms"]
        rows.append(row)
        print(row, flush=True)
    return rows


def cuequivariance_product(lmax: int, channels: int, device):
    """cuEquivariance's channelwise product of ``C x (0..L)`` and ``0..L``, or None."""
    try:
        import cuequivariance as cue
        import cuequivariance_torch as cuet
    except ImportError:
        return None
    irreps = cue.Irreps("O3", " + ".join(f"{channels}x{l}{'e' if l % 2 == 0 else 'o'}"
                                         for l in range(lmax + 1)))  # fmt: skip
    sh = cue.Irreps("O3", " + ".join(f"1x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(lmax + 1)))
    tp = cuet.ChannelWiseTensorProduct(irreps, sh, irreps, layout=cue.ir_mul,
                                       shared_weights=False, internal_weights=False)  # fmt: skip
    return tp.to(device)


def product_rows(edges: int, lmaxes, channels: int, device, repeats: int) -> list[dict]:
    rows = []
    for lmax in lmaxes:
        dim = (lmax + 1) ** 2
        x1 = torch.randn(edges, dim, channels, device=device, requires_grad=True)
        sh = spherical_harmonics(
            lmax, torch.randn(edges, 3, device=device), normalization="component"
        )
        flat = x1.detach().reshape(edges, -1).requires_grad_(True)
        row = {"what": "product", "L": lmax, "E": edges, "C": channels}

        def ours(name):
            module = make(name, lmax, lmax, lmax, channels).to(device)
            weight = torch.randn(edges, *module.weight_shape, device=device, requires_grad=True)
            return fwd_bwd(lambda a, w: module(a, sh, w), [x1, weight])

        def e3nn():
            cg = ClebschGordanProduct(lmax, lmax, lmax, channels, "external", paths="even")
            tp = e3nn_equivalent(cg)[0].to(device)
            w = torch.randn(edges, tp.weight_numel, device=device, requires_grad=True)
            return fwd_bwd(lambda a, b: tp(a, sh, b), [flat, w])

        def cuequivariance():
            tp = cuequivariance_product(lmax, channels, device)
            if tp is None:
                raise ImportError("cuequivariance_torch is not installed")
            w = torch.randn(edges, tp.weight_numel, device=device, requires_grad=True)
            return fwd_bwd(lambda a, b: tp(a, sh, b), [flat, w])

        calls = {name: partial(ours, name) for name in ("cg", "gaunt_grid", "so2")}
        if lmax <= 6:  # above, ours only (high-degree scaling; e3nn takes seconds there)
            calls.update(e3nn=e3nn, cuequivariance=cuequivariance)
        for name, build in calls.items():
            try:
                row[f"{name}_ms"] = 1e3 * timed(build(), device, repeats)
            except Exception as error:  # noqa: BLE001 - recorded, the other columns go on
                row[f"{name}_error"] = f"{type(error).__name__}: {error}"[:200]
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
        print(row, flush=True)
    return rows


def training_rows(device, batch: int, repeats: int) -> list[dict]:
    from torch_geometric.data import Batch, Data

    from geobasis.graph import radius_graph
    from geobasis.nn import ManyBodyPotential, Potential

    g = torch.Generator().manual_seed(0)
    molecules = []
    for _ in range(batch):
        pos = torch.randn(21, 3, generator=g) * 1.6
        data = Data(pos=pos, z=torch.tensor([6] * 9 + [1] * 8 + [8] * 4))
        data.edge_index = radius_graph(pos, 5.0)
        molecules.append(data)
    data = Batch.from_data_list(molecules).to(device)
    rows = []
    for name, model in (("Potential", Potential()), ("ManyBodyPotential", ManyBodyPotential())):
        model = model.to(device).train()

        def step(model=model):
            out = model(data)
            (out["energy"].square().mean() + out["forces"].square().mean()).backward()

        seconds = timed(step, device, repeats)
        rows.append({"what": "training step", "model": name, "molecules": batch,
                     "step_ms": 1e3 * seconds, "molecules_per_s": batch / seconds})  # fmt: skip
    return rows


def radial_rows(edges: int, device, repeats: int) -> list[dict]:
    """Bessel and spherical Bessel bases against PyG's DimeNet forms: forward, and
    forward + backward to the distances (as the models take them, for forces)."""
    from radial import pyg_spherical_bessel  # benchmarks/radial.py
    from torch_geometric.nn.models.dimenet import BesselBasisLayer

    from geobasis.radial import BesselBasis, SphericalBesselBasis

    cutoff = 5.0
    r = torch.rand(edges, device=device) * cutoff
    cases = [("Bessel n=8", BesselBasis(8, cutoff).to(device),
              BesselBasisLayer(8, cutoff).to(device), r)]  # fmt: skip
    for lmax, count in ((3, 6), (8, 8)):
        cases.append((f"spherical Bessel lmax={lmax} n={count}",
                      SphericalBesselBasis(lmax, count, cutoff).to(device),
                      pyg_spherical_bessel(lmax, count), r / cutoff))  # fmt: skip
    rows = []
    for name, ours, theirs, their_input in cases:
        row = {"what": "radial", "basis": name, "E": edges}
        for key, fn, x in (("geobasis", ours, r), ("pyg", theirs, their_input)):
            with torch.no_grad():
                row[f"{key}_ms"] = 1e3 * timed(partial(fn, x), device, repeats)
            leaf = x.detach().clone().requires_grad_(True)
            row[f"{key}_grad_ms"] = 1e3 * timed(fwd_bwd(fn, [leaf]), device, repeats)
        rows.append(row)
        print(row, flush=True)
    return rows


def _ms(row: dict, key: str) -> str:
    if f"{key}_ms" in row:
        return f"{row[f'{key}_ms']:.2f}"
    return "error" if f"{key}_error" in row else "—"


def _ratio(row: dict, key: str) -> str:
    ours = [row[f"{n}_ms"] for n in ("cg", "gaunt_grid", "so2") if f"{n}_ms" in row]
    return f"{row[f'{key}_ms'] / min(ours):.2f}" if ours and f"{key}_ms" in row else "—"


def markdown(result: dict) -> str:
    lines = [f"## geobasis on {result['device']}", "", result["note"], ""]
    lines += [
        "| harmonics L | E | geobasis ms | monomials ms | recurrence ms | e3nn ms "
        "| cuEquivariance ms | e3nn / geobasis | cuEquivariance / geobasis |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    problems = [r for k in ("harmonics", "products", "training") for r in result[k]
                if "error" in r or "skipped" in r]  # fmt: skip
    for r in result["harmonics"]:
        if "L" in r:
            cells = [_ms(r, k) for k in ("geobasis", "monomials", "recurrence", "e3nn",
                                         "cuequivariance")]  # fmt: skip
            ratios = [f"{r[f'{k}_ms'] / r['geobasis_ms']:.2f}" if f"{k}_ms" in r else "—"
                      for k in ("e3nn", "cuequivariance")]  # fmt: skip
            lines.append(f"| {r['L']} | {r['E']} | " + " | ".join(cells + ratios) + " |")
    lines += ["", "| product L | E | CG ms | Gaunt grid ms | SO(2) ms | e3nn ms | cuEquivariance ms "
              "| e3nn / best ours | cuEquivariance / best ours |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["products"]:
        if "L" in r:
            cells = [_ms(r, k) for k in ("cg", "gaunt_grid", "so2", "e3nn", "cuequivariance")]
            lines.append(f"| {r['L']} | {r['E']} | " + " | ".join(cells) +
                         f" | {_ratio(r, 'e3nn')} | {_ratio(r, 'cuequivariance')} |")  # fmt: skip
            problems += [{"what": f"product L={r['L']} E={r['E']} {k}", "error": v}
                         for k, v in r.items() if k.endswith("_error")]  # fmt: skip
    radial = [r for r in result.get("radial", []) if "basis" in r]
    if radial:
        lines += ["", "| radial basis | E | geobasis ms | PyG ms | PyG / geobasis "
                  "| fwd+bwd: geobasis ms | PyG ms | PyG / geobasis |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in radial:
            lines.append(
                f"| {r['basis']} | {r['E']} | {r['geobasis_ms']:.2f} | {r['pyg_ms']:.2f} | "
                f"{r['pyg_ms'] / r['geobasis_ms']:.2f} | {r['geobasis_grad_ms']:.2f} | "
                f"{r['pyg_grad_ms']:.2f} | {r['pyg_grad_ms'] / r['geobasis_grad_ms']:.2f} |"
            )
    problems += [r for r in result.get("radial", []) if "error" in r or "skipped" in r]
    lines += ["", "| model | molecules | step ms | molecules/s |", "|---|---|---|---|"]
    for r in result["training"]:
        if "model" in r:
            lines.append(f"| {r['model']} | {r['molecules']} | {r['step_ms']:.1f} | "
                         f"{r['molecules_per_s']:.0f} |")  # fmt: skip
    if problems:
        lines += ["", "Not measured:", ""]
        lines += [f"- {r['what']}: {r.get('error', r.get('skipped'))}" for r in problems]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Harmonics and products, fwd+bwd ms against L at the smallest edge count (log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (("harmonics", ("geobasis", "e3nn", "cuequivariance")),
              ("products", ("cg", "gaunt_grid", "so2", "e3nn", "cuequivariance")))  # fmt: skip
    for ax, (key, names) in zip(axes, panels, strict=True):
        rows = [r for r in result[key] if "L" in r]
        edges = min((r["E"] for r in rows), default=0)
        rows = [r for r in rows if r["E"] == edges]
        for name in names:
            points = [(r["L"], r[f"{name}_ms"]) for r in rows if f"{name}_ms" in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=name)
        ax.set(yscale="log", xlabel="L", ylabel="fwd+bwd ms",
               title=f"{key}, {edges:,} edges, {result['device']}")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def guarded(rows: list[dict], what: str, make_rows, deadline: float) -> None:
    """Append ``make_rows()`` to ``rows``; an error or an exhausted time budget becomes a
    row that says so, so one failure never loses the rest of the table."""
    if time.perf_counter() > deadline:
        rows.append({"what": what, "skipped": "time budget spent"})
        return
    try:
        rows += make_rows()
    except Exception as error:  # noqa: BLE001 - recorded in the table, then go on
        rows.append({"what": what, "error": f"{type(error).__name__}: {error}"[:300]})
        print(f"{what}: {type(error).__name__}: {error}", flush=True)
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


SECTIONS = ("harmonics", "products", "training", "radial")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gpu")
    parser.add_argument("--edges", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--budget", type=float, default=210.0, help="seconds for the tables")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--replot", type=Path, help="only plot this gpu.json beside it")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS,
                        help="which tables to measure (default: all)")  # fmt: skip
    args = parser.parse_args()
    if args.replot:
        plot(json.loads(args.replot.read_text()), args.replot.with_suffix(".png"))
        return
    dry = args.dry_run or not torch.cuda.is_available()
    device = torch.device("cpu" if dry else "cuda")
    edges, lmaxes, repeats = ([200], (1, 2), 1) if dry else (args.edges, range(1, 7), 7)
    deadline = time.perf_counter() + args.budget
    try:
        import cuequivariance_torch  # noqa: F401

        cue_note = f"cuEquivariance {version('cuequivariance_torch')}"
        try:
            import cuequivariance_ops_torch  # noqa: F401

            cue_note += f" with its CUDA ops {version('cuequivariance_ops_torch_cu13')}"
        except ImportError:
            cue_note += " without its CUDA ops (naive fallback)"
    except ImportError:
        cue_note = "cuEquivariance: not installed here, its column is skipped"
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (dry run)",
        "note": f"fwd+bwd medians of {repeats} after warm-up, float32, C = {args.channels}; "
        f"torch {torch.__version__}; {cue_note}.",
        "harmonics": [], "products": [], "training": [], "radial": [],
    }  # fmt: skip

    def save() -> None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu.json").write_text(json.dumps(result, indent=2))
        (args.out / "gpu.md").write_text(markdown(result))

    for count in edges if "harmonics" in args.sections else []:
        guarded(result["harmonics"], "harmonics",
                lambda: harmonics_rows(count, lmaxes, device, repeats), deadline)  # fmt: skip
    save()
    for count in edges if "products" in args.sections else []:
        big = count > 200_000  # 1M edges: up to L = 4 (memory of e3nn's per-edge weights)
        degrees = [l for l in lmaxes if l <= 4] if big else [*lmaxes, *([] if dry else [7, 8])]
        for lmax in degrees:
            guarded(result["products"], "product",
                    lambda: product_rows(count, [lmax], args.channels, device, repeats),
                    deadline)  # fmt: skip
            save()
    for batch in ([2] if dry else [64, 512]) if "training" in args.sections else []:
        guarded(result["training"], "training step",
                lambda: training_rows(device, batch, repeats), deadline)  # fmt: skip
    for count in edges if "radial" in args.sections else []:
        guarded(result["radial"], "radial",
                lambda: radial_rows(count, device, repeats), deadline)  # fmt: skip
        save()
    save()
    try:
        plot(result, args.out / "gpu.png")
    except ImportError:
        print("matplotlib is not installed: no plot")
    print(markdown(result))


if __name__ == "__main__":
    main()
