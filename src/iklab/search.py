"""`python -m iklab.search`: run (or resume) a study from a search file, e.g. `make search`.

The search file, the arguments and the Optuna storage are checked before TensorFlow loads;
the study itself is `iklab.studies.search_study.run_search`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from iklab.learning.config import USER_ERRORS, ConfigError, apply_overrides
from iklab.learning.console import OneLineParser, number_at_least, quiet_optuna, run_heavy

if TYPE_CHECKING:
    from iklab.studies.search_file import SearchConfig
from iklab.core.install import SEARCH_MODULES, needs_train_extra


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m iklab.search", description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="experiments/search_jaco.yaml", help="search file")
    parser.add_argument("--n-trials", type=number_at_least(int, 0), default=0, help="0: the file's value")
    parser.add_argument("--timeout-minutes", type=number_at_least(float, 0), default=0, help="0: the file's value")
    parser.add_argument("--storage", default="", help="Optuna storage URL; empty: the file's value")
    parser.add_argument("--study-name", default="", help="empty: the file's value")
    parser.add_argument(
        "--dataset-rows", type=number_at_least(int, 0), default=0, help="dataset size; 0: the base experiment's"
    )
    parser.add_argument(
        "--final-overrides",
        default="",
        help='KEY=VALUE ... for retraining the best, over the file\'s, e.g. "training.time_budget_minutes=600"',
    )
    parser.add_argument(
        "--finalize",
        default="",
        choices=["", "true", "false"],
        help="retrain and register the best at the end (false for extra workers)",
    )
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    from iklab.studies.search_file import base_experiment, load_search  # Optuna: after the install check

    study = {
        key: value
        for key, value in (
            ("n_trials", args.n_trials),
            ("timeout_minutes", args.timeout_minutes),
            ("storage", args.storage),
            ("name", args.study_name),
        )
        if value
    }
    if args.finalize:
        study["finalize"] = args.finalize == "true"
    config = load_search(args.experiment, study)
    if args.final_overrides:
        final = dict(apply_overrides({}, args.final_overrides, "--final-overrides").items())
        config = replace(config, final_overrides={**config.final_overrides, **_flatten(final)})
        base_experiment(config, final=True)  # checked now, not after the trials
    if args.dataset_rows:
        config = replace(config, trial_overrides={**config.trial_overrides, "data.rows": args.dataset_rows})
        base_experiment(config)  # the new size is checked now (data.rows >= 100), not in trial 0
    return config


def _flatten(tree: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: overrides parsed into a tree, back to dotted keys."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def main(argv: list[str] | None = None) -> int:
    if (message := needs_train_extra("iklab.search", SEARCH_MODULES)) is not None:
        print(message, file=sys.stderr)
        return 2
    args = _parse_args(argv)
    quiet_optuna()
    from iklab.studies.search_file import make_study

    try:
        config = config_from_args(args)
        study = make_study(config)  # a bad storage URL or an unreachable database: now, in one line
    except ConfigError as exc:
        print(f"iklab.search: error: {exc}", file=sys.stderr)
        return 2

    def work() -> object:
        from iklab.studies.search_study import (
            run_search,  # TensorFlow, MLflow: only once the command line is known to be good
        )

        return run_search(config, study)

    status, result = run_heavy("iklab.search", work, mistakes=USER_ERRORS, runs="its MLflow runs are")
    if status is not None:
        return status
    if result.note:
        print(result.note)
        return 0 if result.best_trial is not None else 1
    c = result.counts
    print(
        f"study {result.study_name}: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed "
        f"in {result.wall_seconds / 60:.1f} min ({result.trials_seconds / 60:.1f} in trials, "
        f"{result.final_seconds / 60:.1f} retraining the best); parent run {result.parent_run_id}"
    )
    if result.champion:
        print(result.champion["summary_line"])
    return 0 if result.best_trial is not None else 1


if __name__ == "__main__":
    sys.exit(main())
