"""`python -m iklab.train --experiment FILE [--overrides "KEY=VALUE ..."]`: one training run.

The experiment file and overrides are checked before TensorFlow loads, so a mistake is one
line in a second, not after its start-up; the training itself is `iklab.learning.training.train`.
"""

from __future__ import annotations

import argparse
import sys

from iklab.core.install import TRAIN_MODULES, needs_train_extra
from iklab.learning import metric_names as M
from iklab.learning.config import USER_ERRORS, ConfigError, load_experiment
from iklab.learning.console import OneLineParser, run_heavy


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m iklab.train", description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True, help="experiment YAML, e.g. experiments/jaco_mlp.yaml")
    parser.add_argument(
        "--overrides", default="", help='space-separated KEY=VALUE, e.g. "model.width=256 optimizer.learning_rate=3e-4"'
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if (message := needs_train_extra("iklab.train", TRAIN_MODULES)) is not None:
        print(message, file=sys.stderr)
        return 2
    args = _parse_args(argv)
    try:
        config = load_experiment(args.experiment, args.overrides)
    except ConfigError as exc:
        print(f"iklab.train: error: {exc}", file=sys.stderr)
        return 2

    def work() -> object:
        from iklab.learning.training import train  # TensorFlow, MLflow: only once the command line is known to be good

        return train(config)

    status, result = run_heavy("iklab.train", work, mistakes=USER_ERRORS, runs="the MLflow run is")
    if status is not None:
        return status
    if result.status != "finished":
        print(f"iklab.train: run {result.run_id} failed: {result.reason}", file=sys.stderr)
        return 1
    m = result.metrics
    print(
        f"run {result.run_id}: test median position error {m[M.TEST_POSITION_MEDIAN]:.2f} mm "
        f"(p95 {m[M.TEST + M.POSITION_P95]:.2f}), rotation {m[M.TEST + M.ROTATION_MEDIAN]:.2f} deg; "
        f"k-NN {m[M.KNN_POSITION_MEDIAN]:.2f} mm, "
        f"mean {m[M.MEAN + M.POSITION_MEDIAN]:.1f} mm; flags: {', '.join(result.flags) or 'none'}"
    )
    print(f"trained {m['train_seconds']:.0f} s ({m['epochs_run']:.0f} epochs); peak memory {m['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
