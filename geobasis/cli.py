"""The ``geobasis`` command.

``geobasis check`` evaluates the bases, checks the equivariance of the built-in
operations on random data and prints a table (exit status 1 if any check fails).
"""

from __future__ import annotations

import argparse
import sys
import time


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
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
