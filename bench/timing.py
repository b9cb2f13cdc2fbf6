"""Shared by the benchmark scripts (imported as `timing`: scripts run with bench/ on sys.path)."""

import time


def best_seconds(call, repeats: int = 3):
    """(smallest wall time of ``repeats`` calls of ``call()``, the last call's result)."""
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    return min(seconds), result


def training_throughput_config(description: str, default_rows: int):
    """The command line of the training-throughput benchmarks (``--experiment --rows --epochs
    --repeats --batch-size``): (args, the experiment's config on ``--rows`` training rows)."""
    import argparse
    import dataclasses

    from iklab.learning.config import load_experiment

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--experiment", default="experiments/jaco_mlp.yaml")
    parser.add_argument("--rows", type=int, default=default_rows, help="training rows used")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=0, help="0: the experiment's")
    args = parser.parse_args()
    config = load_experiment(args.experiment, f"data.train_rows={args.rows}")
    if args.batch_size:
        config = dataclasses.replace(config, training=dataclasses.replace(config.training, batch_size=args.batch_size))
    return args, config
