"""`python -m iklab.ablations --file F [--only ROWS] [--budget-minutes M]`: one change at a time
against a fixed baseline (the rows and their runs: :mod:`iklab.studies.ablations`)."""

from __future__ import annotations

import argparse
import sys

from iklab.core.install import TRAIN_MODULES, needs_train_extra
from iklab.learning.config import USER_ERRORS, ConfigError
from iklab.studies.ablations import load_ablations, results_markdown, run_ablations, select


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from iklab.learning.console import OneLineParser

    parser = OneLineParser(prog="python -m iklab.ablations", description=__doc__.splitlines()[0])
    parser.add_argument("--file", default="experiments/ablations_jaco.yaml", help="ablations file")
    parser.add_argument("--only", default="", help="comma-separated row names (baseline included); empty: all")
    parser.add_argument("--budget-minutes", type=float, default=None, help="training time per row; default: the file's")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if (message := needs_train_extra("iklab.ablations", TRAIN_MODULES)) is not None:
        print(message, file=sys.stderr)
        return 2
    from iklab.learning.console import run_heavy

    args = _parse_args(argv)
    try:
        file = load_ablations(args.file, args.budget_minutes)
        rows = select(file, args.only)
    except ConfigError as exc:
        print(f"iklab.ablations: error: {exc}", file=sys.stderr)
        return 2
    mistakes = (*USER_ERRORS, RuntimeError)  # RuntimeError: a row's training diverged
    status, ran = run_heavy(
        "iklab.ablations", lambda: run_ablations(file, rows), mistakes=mistakes, runs="its MLflow runs are"
    )
    if status is not None:
        return status
    run_id, results = ran
    print(results_markdown(file, results))
    print(f"parent run {run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
