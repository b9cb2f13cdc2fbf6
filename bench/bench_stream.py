"""Streamed training (rows read from the Parquet parts through tf.data, iklab.learning.streaming) against
in-memory training: same model, same rows, same process.

Target (issue 14): streamed throughput >= 0.8 of in-memory.
Run: .venv/bin/python bench/bench_stream.py [--experiment experiments/jaco_mlp.yaml]
     [--rows 400000] [--epochs 2] [--repeats 3] [--batch-size N]
Epochs are timed after a first one that traces the step. Peak memory of a streamed training on
50M rows: docs/training.md, "Data beyond memory" (python -m iklab.train logs peak_rss_mb).
"""

import dataclasses
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from timing import training_throughput_config  # noqa: E402

from iklab.learning.datasets import ensure_dataset, load_dataset  # noqa: E402
from iklab.learning.training import compile_model, open_dataset, prepare_arrays  # noqa: E402


def samples_per_second(config, streamed: bool, epochs: int) -> float:
    variant = dataclasses.replace(config, data=dataclasses.replace(config.data, stream=streamed))
    dataset, stream = open_dataset(variant)
    arrays = prepare_arrays(variant, dataset, stream)
    model = compile_model(variant, arrays, dataset.robot)
    rows = arrays.fit_rows(config.training.batch_size)
    model.fit(**rows, epochs=1, verbose=0)  # trace
    started = time.perf_counter()
    model.fit(**rows, epochs=epochs, verbose=0)
    return arrays.n_train * epochs / (time.perf_counter() - started)


def main() -> None:
    args, config = training_throughput_config(__doc__.splitlines()[0], default_rows=400_000)
    load_dataset(ensure_dataset(config.data), {"train": 1, "val": 1, "test": 1})  # generated once, before timing
    rates: dict[str, list[float]] = {"in-memory": [], "streamed": []}
    for _ in range(args.repeats):  # interleaved, best of each: the machine's load drifts
        rates["in-memory"].append(samples_per_second(config, False, args.epochs))
        rates["streamed"].append(samples_per_second(config, True, args.epochs))
    print(
        f"{config.name}: {args.rows} rows x {args.epochs} epochs, batch {config.training.batch_size}, "
        f"shuffle buffer {config.data.shuffle_buffer} rows, best of {args.repeats}"
    )
    memory = max(rates["in-memory"])
    for name, values in rates.items():
        print(f"{name:9s}: {max(values):9.0f} samples/s  ratio to in-memory {max(values) / memory:.3f}")
    ratio = max(rates["streamed"]) / memory
    print(f"target: streamed / in-memory >= 0.8 -> {'met' if ratio >= 0.8 else 'MISSED'}")


if __name__ == "__main__":
    main()
