"""`python -m iklab.cases [--cases NAMES] [--quick true] [--cases-dir DIR]`: the diagnosis cases
(`iklab.studies.diagnosis_cases`), broken and fixed, in the MLflow experiment `diagnosis-cases`.

The case files are found before TensorFlow loads, so a wrong name is one line in a second.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iklab.core.install import TRAIN_MODULES, needs_train_extra
from iklab.learning.config import USER_ERRORS, ConfigError
from iklab.learning.console import OneLineParser, run_heavy

# Relative to the working directory, like every path in iklab's commands (run from the repository, as
# `make cases` and `mlflow run` do); `--cases-dir` points elsewhere.
CASES_DIR = Path("experiments") / "cases"


def case_paths(directory: str | Path = CASES_DIR) -> list[Path]:
    """The case files in ``directory``; ConfigError if there are none."""
    paths = sorted(Path(directory).glob("*.yaml"))
    if not paths:
        raise ConfigError(f"no case files (*.yaml) in {directory}: run from the repository or pass --cases-dir")
    return paths


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m iklab.cases", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="all", help="comma-separated case names or files (default: all)")
    parser.add_argument("--cases-dir", default=str(CASES_DIR), help="where the case files are (default: %(default)s)")
    parser.add_argument("--quick", default="false", help="true: the seconds-long versions the tests run")
    return parser.parse_args(argv)


def _select(spec: str, directory: str | Path = CASES_DIR) -> list[Path]:
    known = {p.stem: p for p in case_paths(directory)}
    if spec in ("", "all"):
        return list(known.values())
    chosen = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        path = known.get(item) or (Path(item) if Path(item).is_file() else None)
        if path is None:
            raise ConfigError(f"unknown case {item!r}; known: {', '.join(known)}")
        chosen.append(path)
    return chosen


def main(argv: list[str] | None = None) -> int:
    if (message := needs_train_extra("iklab.cases", TRAIN_MODULES)) is not None:
        print(message, file=sys.stderr)
        return 2
    args = _parse_args(argv)
    quick = str(args.quick).lower() in ("1", "true", "yes")
    try:
        paths = _select(args.cases, args.cases_dir)
    except ConfigError as exc:
        print(f"iklab.cases: error: {exc}", file=sys.stderr)
        return 2

    def work() -> list:
        from iklab.studies.diagnosis_cases import load_case, run_cases  # TensorFlow: only now

        cases = sorted((load_case(p) for p in paths), key=lambda c: c.title)  # "1. ..." first
        return run_cases(cases, quick=quick)

    status, results = run_heavy("iklab.cases", work, mistakes=USER_ERRORS, runs="its MLflow runs are")
    if status is not None:
        return status
    from iklab.studies.diagnosis_cases import summary_markdown

    print(summary_markdown(results))
    return 0 if all(r.diagnosed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
