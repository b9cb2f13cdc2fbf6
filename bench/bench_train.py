"""Training throughput of `train()` against a bare `model.fit` on the same arrays and model,
and the diagnostics' share of epoch time, in one run.

Targets (issue 3): throughput ratio >= 0.9; diagnostics <= 5% of epoch time.
Run: .venv/bin/python bench/bench_train.py [--experiment experiments/jaco_mlp.yaml] [--epochs 4]
MLflow logs go to a temporary store; the dataset is the experiment's (generated if missing).
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mlflow  # noqa: E402

from iklab.learning.config import load_experiment  # noqa: E402
from iklab.learning.datasets import ensure_dataset, load_dataset  # noqa: E402
from iklab.learning.training import compile_model, prepare_arrays, train  # noqa: E402


def bare_fit_seconds(config, arrays, robot) -> float:
    model = compile_model(config, arrays, robot)
    started = time.perf_counter()
    model.fit(
        arrays.x_train,
        arrays.y_train,
        validation_data=(arrays.x_val, arrays.y_val),
        epochs=config.training.epochs,
        batch_size=config.training.batch_size,
        shuffle=True,
        verbose=0,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="experiments/jaco_mlp.yaml")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = load_experiment(
        args.experiment, f"training.epochs={args.epochs} training.early_stopping_patience=0 mlflow.log_model=false"
    )
    dataset = load_dataset(ensure_dataset(config.data))
    arrays = prepare_arrays(config, dataset)
    rows = len(arrays.x_train) * config.training.epochs
    with tempfile.TemporaryDirectory() as store:
        mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
        bare, ours, share = [], [], []
        for _ in range(args.repeats):  # interleaved, best of each: the machine's load drifts
            bare.append(bare_fit_seconds(config, arrays, dataset.robot))
            result = train(config)
            ours.append(result.train_seconds)
            epochs = result.history[1:]  # epoch 1 carries tracing and compilation
            share.append(sum(h["diagnostics_seconds"] for h in epochs) / sum(h["epoch_seconds"] for h in epochs))
    print(
        f"{config.name}: {len(arrays.x_train)} training rows x {config.training.epochs} epochs, "
        f"batch {config.training.batch_size}"
    )
    print(f"bare model.fit : {rows / min(bare):9.0f} samples/s")
    print(f"iklab train()  : {rows / min(ours):9.0f} samples/s (diagnostics, MLflow per-epoch logging, callbacks)")
    print(f"seconds        : bare {[round(t, 1) for t in bare]}, train() {[round(t, 1) for t in ours]}")
    print(
        f"ratio          : {min(bare) / min(ours):9.3f} best-of-{args.repeats} (target >= 0.9); "
        f"median {statistics.median(bare) / statistics.median(ours):.3f}"
    )
    print(f"diagnostics    : {100 * min(share):8.2f}% of epoch time, epochs 2+ (target <= 5%)")


if __name__ == "__main__":
    main()
