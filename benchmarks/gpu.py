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
  ``ManyBodyPotential`` on batches of random 21-atom molecules.

``--dry-run`` runs the same code on the CPU with tiny sizes (what the tests and CI can
check without a GPU).  Writes ``gpu.json`` and ``gpu.md`` into ``--out``.

    python benchmarks/gpu.py --out benchmarks/results/gpu [--edges 100000 1000000] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from geobasis.o3 import spherical_harmonics
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
    from e3nn import o3

    rows = []
    vectors = torch.randn(edges, 3, device=device, requires_grad=True)
    for lmax in lmaxes:
        ours = timed(fwd_bwd(lambda v: spherical_harmonics(lmax, v), [vectors]), device, repeats)
        e3nn = timed(fwd_bwd(lambda v: o3.spherical_harmonics(list(range(lmax + 1)), v, True),
                             [vectors]), device, repeats)  # fmt: skip
        rows.append({"what": "harmonics", "L": lmax, "E": edges, "geobasis_ms": 1e3 * ours,
                     "e3nn_ms": 1e3 * e3nn, "e3nn_over_geobasis": e3nn / ours})  # fmt: skip
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
        cg = ClebschGordanProduct(lmax, lmax, lmax, channels, "external", paths="even")
        tp, _, _ = e3nn_equivalent(cg)[:3]
        dim = (lmax + 1) ** 2
        x1 = torch.randn(edges, dim, channels, device=device, requires_grad=True)
        sh = spherical_harmonics(
            lmax, torch.randn(edges, 3, device=device), normalization="component"
        )
        row = {"what": "product", "L": lmax, "E": edges, "C": channels}
        for name in ("cg", "gaunt_grid", "so2"):
            module = make(name, lmax, lmax, lmax, channels).to(device)
            weight = torch.randn(edges, *module.weight_shape, device=device, requires_grad=True)
            row[f"{name}_ms"] = 1e3 * timed(fwd_bwd(lambda a, w, m=module: m(a, sh, w), [x1, weight]),
                                            device, repeats)  # fmt: skip
        tp = tp.to(device)
        flat = x1.detach().reshape(edges, -1).requires_grad_(True)
        w = torch.randn(edges, tp.weight_numel, device=device, requires_grad=True)
        row["e3nn_ms"] = 1e3 * timed(fwd_bwd(lambda a, b: tp(a, sh, b), [flat, w]), device, repeats)
        cue_tp = cuequivariance_product(lmax, channels, device)
        if cue_tp is not None:
            wc = torch.randn(edges, cue_tp.weight_numel, device=device, requires_grad=True)
            row["cuequivariance_ms"] = 1e3 * timed(
                fwd_bwd(lambda a, b: cue_tp(a, sh, b), [flat, wc]), device, repeats
            )
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


def markdown(result: dict) -> str:
    lines = [f"## geobasis on {result['device']}", "", result["note"], ""]
    lines += [
        "| harmonics L | E | geobasis ms | e3nn ms | e3nn / geobasis |",
        "|---|---|---|---|---|",
    ]
    for r in result["harmonics"]:
        lines.append(f"| {r['L']} | {r['E']} | {r['geobasis_ms']:.2f} | {r['e3nn_ms']:.2f} | "
                     f"{r['e3nn_over_geobasis']:.2f} |")  # fmt: skip
    lines += ["", "| product L | E | CG ms | Gaunt grid ms | SO(2) ms | e3nn ms | cuEquivariance ms "
              "| e3nn / best ours |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["products"]:
        best = min(r["cg_ms"], r["gaunt_grid_ms"], r["so2_ms"])
        cue = f"{r['cuequivariance_ms']:.2f}" if "cuequivariance_ms" in r else "—"
        lines.append(f"| {r['L']} | {r['E']} | {r['cg_ms']:.2f} | {r['gaunt_grid_ms']:.2f} | "
                     f"{r['so2_ms']:.2f} | {r['e3nn_ms']:.2f} | {cue} | "
                     f"{r['e3nn_ms'] / best:.2f} |")  # fmt: skip
    lines += ["", "| model | molecules | step ms | molecules/s |", "|---|---|---|---|"]
    for r in result["training"]:
        lines.append(f"| {r['model']} | {r['molecules']} | {r['step_ms']:.1f} | "
                     f"{r['molecules_per_s']:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gpu")
    parser.add_argument("--edges", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    args = parser.parse_args()
    dry = args.dry_run or not torch.cuda.is_available()
    device = torch.device("cpu" if dry else "cuda")
    edges, lmaxes, repeats = ([200], (1, 2), 1) if dry else (args.edges, range(1, 7), 7)
    try:
        import cuequivariance_torch  # noqa: F401

        cue_note = "cuEquivariance: installed"
    except ImportError:
        cue_note = "cuEquivariance: not installed here, its column is skipped"
    products = []
    for count in edges:
        big = count > 200_000  # 1M edges: the small degrees only (memory of e3nn's paths)
        products += product_rows(count, [l for l in lmaxes if not big or l <= 3],
                                 args.channels, device, repeats)  # fmt: skip
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (dry run)",
        "note": f"fwd+bwd medians of {repeats} after warm-up, float32, C = {args.channels}; "
        f"torch {torch.__version__}; {cue_note}.",
        "harmonics": harmonics_rows(edges[0], lmaxes, device, repeats),
        "products": products,
        "training": training_rows(device, 2 if dry else 64, repeats),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2))
    (args.out / "gpu.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
