"""The ``geobasis`` command.

``geobasis check`` evaluates the bases, checks the equivariance of the built-in
operations on random data and prints a table (exit status 1 if any check fails).
``geobasis train`` trains a :class:`geobasis.nn.Potential` or, with ``--model faenet``, a
:class:`geobasis.nn.FAENet` (default: on a generated
GFN2-xTB ethanol set) and prints the test errors; ``geobasis evaluate`` scores a
checkpoint on a dataset; ``geobasis md`` runs molecular dynamics; ``geobasis export``
writes a trained model as a self-contained ``.pt2`` artifact for MD engines.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _check(args: argparse.Namespace) -> int:
    import torch

    from geobasis.testing.checks import run_checks

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
    """The YAML config (if any) with the given flags on top; validated when built."""
    from geobasis.train import TrainConfig

    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    values = config.to_dict()
    for name in values:
        if name != "model_options" and getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    model_flags = {k[len("model__") :]: v for k, v in vars(args).items() if k.startswith("model__")}
    given = {k: v for k, v in model_flags.items() if v is not None}
    values["model_options"] = {**values["model_options"], **given}
    if "model" in vars(args) and args.model not in (None, config.model):
        values["model_options"] = given  # another model: the YAML's options were for the old one
    return TrainConfig.from_dict(values)


def _print_report(report: dict, title: str) -> None:
    count = report.get("test_structures")
    print(f"\n{title}" + (f" ({count} structures)" if count is not None else ""))
    print(f"{'':8}{'MAE':>14}{'RMSE':>14}")
    rows = [("energy", "energy_mae_meV", "energy_rmse_meV", "meV")]
    if "force_mae_meV_per_A" in report:
        rows.append(("forces", "force_mae_meV_per_A", "force_rmse_meV_per_A", "meV/Å"))
    for label, mae, rmse, unit in rows:
        print(f"{label:8}{report[mae]:>14.2f}{report[rmse]:>14.2f}  {unit}")
    for z, mae in report.get("force_mae_meV_per_A_by_element", {}).items():
        print(f"{'  Z=' + z:8}{mae:>14.2f}{'':>14}  meV/Å (force MAE of element {z})")


def _train(args: argparse.Namespace) -> int:
    from geobasis.train import train

    config = _train_config(args)
    start = time.perf_counter()
    report = train(config, resume=args.resume, progress=not args.quiet)
    if report:
        _print_report(report, "test split")
        print(f"run folder: {config.runs_dir}/{config.name}  ({time.perf_counter() - start:.0f} s)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from geobasis.data import load_dataset, prepare
    from geobasis.nn import load_model
    from geobasis.serialization import load_checkpoint
    from geobasis.train import TrainConfig, evaluate
    from geobasis.train.run import test_structures

    state = load_checkpoint(args.checkpoint)
    model = load_model(state)
    if args.data:
        structures, title = load_dataset(args.data, progress=not args.quiet), args.data
    else:
        config = TrainConfig.from_dict(state["config"])
        structures, title = test_structures(config, progress=not args.quiet), "test split"
    model.check_elements(torch.cat([s.z for s in structures]), args.allow_unseen, "--allow-unseen")
    prepared = prepare(structures, model.cutoff, next(model.parameters()).dtype)
    report = evaluate(model, prepared)
    report.pop("predictions")
    report["test_structures"] = len(prepared)
    _print_report(report, title)
    return 0


def _export(args: argparse.Namespace) -> int:
    import torch

    from geobasis.calculators.export import export_model
    from geobasis.nn import load_model

    model = load_model(args.checkpoint)
    start = time.perf_counter()
    print(f"exporting {model.name} ({args.format}, {args.dtype}); AOTInductor compiles C++: "
          "a minute or two on a CPU", flush=True)  # fmt: skip
    path = export_model(model, args.output, args.format, getattr(torch, args.dtype))
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({size:.1f} MiB) in {time.perf_counter() - start:.0f} s")
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
        allow_unseen=args.allow_unseen,
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
    """One flag per :class:`TrainConfig` field and per model option, with help and choices."""
    import dataclasses
    import typing

    from geobasis.nn.models.options import plain_text
    from geobasis.train import TrainConfig

    parser.add_argument("--config", help="YAML file of config keys (flags override it)")
    parser.add_argument("--resume", action="store_true", help="continue runs/<name>/last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (epoch lines stay)")
    hints = typing.get_type_hints(TrainConfig)
    run = parser.add_argument_group("run and optimisation")
    for f in dataclasses.fields(TrainConfig):
        if f.name != "model_options":
            _add_flag(run, f.name, f.name, hints[f.name], f.default, f.metadata["help"],
                      f.metadata["choices"])  # fmt: skip
    models = parser.add_argument_group("model options (each model takes some; see the note)")
    for name, (option, takers) in _model_options().items():
        defaults = ", ".join(f"{m} {o.default!r}" for m, o in takers.items())
        text = f"{plain_text(option.help)} [{', '.join(takers)}; default {defaults}]"
        _add_flag(models, name, "model__" + name, option.type, None, text, option.choices)


def _model_options() -> dict:
    """``{option: (Option, {model: Option})}`` over every registered model."""
    from geobasis.nn import MODELS

    out: dict = {}
    for model, cls in MODELS.items():
        for name, option in cls.options().items():
            if name not in cls.data_options:
                out.setdefault(name, (option, {}))[1][model] = option
    return out


def _add_flag(group, name: str, dest: str, hint, default, text: str, choices) -> None:
    import typing

    flag = "--" + name.replace("_", "-")
    members = [m for m in typing.get_args(hint) or (hint,) if m is not type(None)]
    shown = "" if default is None or dest.startswith("model__") else f" (default: {default!r})"
    if members == [bool]:  # a switch: given means True, absent keeps the config's
        group.add_argument(flag, dest=dest, action="store_const", const=True, default=None,
                           help=text + shown)  # fmt: skip
        return
    kind = _int_or_float if set(members) == {int, float} else members[0]
    if kind not in (int, float, str, _int_or_float):
        kind = str
    metavar = None if choices else name.upper()
    group.add_argument(flag, dest=dest, type=kind, default=None, choices=choices,
                       metavar=metavar, help=text + shown)  # fmt: skip


def _int_or_float(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def build_parser() -> argparse.ArgumentParser:
    """The ``geobasis`` argument parser (the docs' command lines are checked against it)."""
    parser = argparse.ArgumentParser(
        prog="geobasis", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check", help="evaluate the bases and check equivariance of the built-in operations"
    )
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: torch's choice)"
    )
    check.set_defaults(func=_check)
    train = sub.add_parser(
        "train",
        help="train a Potential (default: xTB ethanol, < 10 min)",
        description="Train a model (geobasis.nn.MODELS) on a dataset; flags override --config.",
        epilog="Model options go to the chosen --model; one it does not take is an error.",
    )
    _add_train_flags(train)
    train.set_defaults(func=_train)
    evaluate = sub.add_parser("evaluate", help="score a checkpoint on a dataset")
    evaluate.add_argument("checkpoint", help="runs/<name>/best.pt")
    evaluate.add_argument("--data", help="dataset spec (default: the run's test split)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.add_argument("--allow-unseen", action="store_true",
                          help="score structures with elements the model never saw")  # fmt: skip
    evaluate.set_defaults(func=_evaluate)
    _add_export_parser(sub)
    md = sub.add_parser("md", help="molecular dynamics with a trained potential (ASE)")
    md.add_argument("checkpoint", help="runs/<name>/best.pt or an exported model.pt2")
    md.add_argument("--structure", default="ethanol", help="molecule name or structure file")
    md.add_argument("--ensemble", choices=["nve", "langevin"], default="nve")
    md.add_argument("--temperature", type=float, default=300.0, help="K")
    md.add_argument("--timestep", type=float, default=0.5, help="fs")
    md.add_argument("--time", type=float, default=1.0, help="ps")
    md.add_argument("--seed", type=int, default=0)
    md.add_argument("--trajectory", help="write an ASE .traj file")
    md.add_argument("--report", help="write the energies and drift as JSON")
    md.add_argument("--quiet", action="store_true", help="no progress bar")
    md.add_argument("--allow-unseen", action="store_true",
                    help="run with elements the model never saw in training")  # fmt: skip
    md.set_defaults(func=_md)
    return parser


def _add_export_parser(sub) -> None:
    from geobasis.calculators.export import EXPORT_FORMATS

    export = sub.add_parser(
        "export",
        help="write a trained model as a self-contained .pt2 artifact (energy, forces, virial)",
        description="Export for MD engines and processes that do not import geobasis "
        "(docs/deployment.md).",
    )
    export.add_argument("checkpoint", help="runs/<name>/best.pt")
    export.add_argument("output", help="the artifact to write, e.g. model.pt2")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="aoti",
                        help="aoti: AOTInductor package (compiled, fastest; Python and C++); "
                        "program: torch.export program (no compiler needed)")  # fmt: skip
    export.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                        help="precision the artifact computes in")  # fmt: skip
    export.set_defaults(func=_export)


def main(argv: list[str] | None = None) -> int:
    """Run the ``geobasis`` command; user errors print one line and return 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, FloatingPointError) as error:  # one line, no traceback
        if args.debug:
            raise
        print(f"geobasis {args.command}: error: {error} (--debug shows where)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
