"""The ``geobasis`` command.

``geobasis check`` evaluates the bases, checks the equivariance of the built-in
operations on random data and prints a table (exit status 1 if any check fails).
``geobasis train`` trains a :class:`geobasis.nn.Potential` or, with ``--model faenet``, a
:class:`geobasis.nn.FAENet` (default: on a generated
GFN2-xTB ethanol set) and prints the test errors; ``geobasis evaluate`` scores a
checkpoint on a dataset.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _check(args: argparse.Namespace) -> int:
    import torch

    from geobasis.checks import run_checks

    torch.set_num_threads(max(1, args.threads)) if args.threads else None
    start = time.perf_counter()
    results = run_checks(progress=not args.quiet)
    width = max(len(r.name) for r in results)
    print(f"{'check':<{width}}  {'max error':>10}  {'tolerance':>9}  status")
    print("-" * (width + 33))
    for r in results:
        print(
            f"{r.name:<{width}}  {r.error:>10.2e}  {r.tolerance:>9.0e}  "
            f"{'ok' if r.passed else 'FAIL'}"
        )
    failed = [r for r in results if not r.passed]
    print(
        f"\n{len(results) - len(failed)}/{len(results)} checks passed "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 1 if failed else 0


def _train_config(args: argparse.Namespace):
    import dataclasses

    from geobasis.train import TrainConfig

    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    return TrainConfig.from_dict({**config.to_dict(), **overrides})  # validated again


def _print_report(report: dict) -> None:
    print(
        "\ntest split"
        + (f" ({report['test_structures']} structures)" if "test_structures" in report else "")
    )
    print(f"{'':8}{'MAE':>10}{'RMSE':>10}")
    print(f"{'energy':8}{report['energy_mae_meV']:>10.2f}{report['energy_rmse_meV']:>10.2f}  meV")
    if "force_mae_meV_per_A" in report:
        print(
            f"{'forces':8}{report['force_mae_meV_per_A']:>10.2f}"
            f"{report['force_rmse_meV_per_A']:>10.2f}  meV/Å"
        )


def _train(args: argparse.Namespace) -> int:
    from geobasis.train import train

    config = _train_config(args)
    start = time.perf_counter()
    report = train(config, resume=args.resume, progress=not args.quiet)
    if report:
        _print_report(report)
        print(f"run folder: {config.runs_dir}/{config.name}  ({time.perf_counter() - start:.0f} s)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from geobasis.train import (
        evaluate,
        load_checkpoint,
        load_model,
        load_structures,
        prepare_structures,
    )

    state = load_checkpoint(args.checkpoint)
    model = load_model(args.checkpoint)
    config = state["config"]
    spec = args.data or config.get("test_data") or config["data"]
    structures = load_structures(spec, config.get("num_frames", 1000), config.get("seed", 0))
    if not args.data and not config.get("test_data"):
        splits = json.loads((Path(args.checkpoint).parent / "splits.json").read_text())
        structures = [structures[i] for i in splits["test"]]
    prepared = prepare_structures(structures, model.cutoff, next(model.parameters()).dtype)
    report = evaluate(model, prepared)
    report.pop("predictions")
    report["test_structures"] = len(prepared)
    _print_report(report)
    return 0


def _md(args: argparse.Namespace) -> int:
    import json

    from geobasis.calculators import run_md

    report = run_md(
        args.checkpoint,
        args.structure,
        args.ensemble,
        args.temperature,
        args.timestep,
        args.time,
        args.seed,
        args.trajectory,
        progress=not args.quiet,
    )
    print(
        f"{report['ensemble'].upper()} {report['time_ps']:.2f} ps, {report['steps']} steps, "
        f"{report['atoms']} atoms, final T {report['final_temperature_K']:.0f} K"
    )
    if "drift_meV_per_atom_per_ps" in report:
        print(
            f"total-energy drift {report['drift_meV_per_atom_per_ps']:+.3f} meV/atom/ps, "
            f"largest excursion {report['max_excursion_meV_per_atom']:.3f} meV/atom"
        )
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2))
    return 0


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    import dataclasses

    from geobasis.train import TrainConfig

    parser.add_argument("--config", help="YAML file of config keys (flags override it)")
    parser.add_argument("--resume", action="store_true", help="continue runs/<name>/last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        if str(f.type) == "bool":  # a switch: given means True, absent keeps the config's
            parser.add_argument(
                flag, dest=f.name, action="store_const", const=True, default=None,
                help=f"default: {f.default!r}",
            )  # fmt: skip
            continue
        kind = {"int": int, "float": float, "str": str}.get(str(f.type).split(" ")[0], None)
        if f.name in ("train_size", "val_size", "test_size"):
            kind = _int_or_float
        elif kind is None:
            kind = float if "float" in str(f.type) else (int if "int" in str(f.type) else str)
        parser.add_argument(
            flag, dest=f.name, type=kind, default=None, help=f"default: {f.default!r}"
        )


def _int_or_float(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="geobasis", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check", help="evaluate the bases and check equivariance of the built-in operations"
    )
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: torch's choice)"
    )
    check.set_defaults(func=_check)
    train = sub.add_parser("train", help="train a Potential (default: xTB ethanol, < 10 min)")
    _add_train_flags(train)
    train.set_defaults(func=_train)
    evaluate = sub.add_parser("evaluate", help="score a checkpoint on a dataset")
    evaluate.add_argument("checkpoint", help="runs/<name>/best.pt")
    evaluate.add_argument("--data", help="dataset (default: the run's test split)")
    evaluate.set_defaults(func=_evaluate)
    md = sub.add_parser("md", help="molecular dynamics with a trained potential (ASE)")
    md.add_argument("checkpoint", help="runs/<name>/best.pt")
    md.add_argument("--structure", default="ethanol", help="molecule name or structure file")
    md.add_argument("--ensemble", choices=["nve", "langevin"], default="nve")
    md.add_argument("--temperature", type=float, default=300.0, help="K")
    md.add_argument("--timestep", type=float, default=0.5, help="fs")
    md.add_argument("--time", type=float, default=1.0, help="ps")
    md.add_argument("--seed", type=int, default=0)
    md.add_argument("--trajectory", help="write an ASE .traj file")
    md.add_argument("--report", help="write the energies and drift as JSON")
    md.add_argument("--quiet", action="store_true")
    md.set_defaults(func=_md)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
