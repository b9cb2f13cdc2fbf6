"""Training throughput with the task-space loss (FK of every prediction, iklab.learning.task_loss) against
the joint loss, same model, same rows, same process.

Target (issue 11): task-space throughput >= 0.8 of the joint-loss throughput.
Run: .venv/bin/python bench/bench_task_loss.py [--experiment experiments/jaco_mlp.yaml]
     [--rows 200000] [--epochs 2] [--repeats 3] [--batch-size N]
Epochs are timed after a first one that traces and compiles the step (XLA on TensorFlow).
"""

import dataclasses
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from timing import training_throughput_config  # noqa: E402

from iklab.learning.datasets import ensure_dataset, load_dataset  # noqa: E402
from iklab.learning.training import compile_model, prepare_arrays  # noqa: E402


def samples_per_second(config, dataset, epochs: int) -> float:
    arrays = prepare_arrays(config, dataset)
    model = compile_model(config, arrays, dataset.robot)
    batch = config.training.batch_size
    model.fit(arrays.x_train, arrays.y_train, batch_size=batch, epochs=1, verbose=0)  # trace and compile
    started = time.perf_counter()
    model.fit(arrays.x_train, arrays.y_train, batch_size=batch, epochs=epochs, shuffle=True, verbose=0)
    return len(arrays.x_train) * epochs / (time.perf_counter() - started)


def main() -> None:
    args, config = training_throughput_config(__doc__.splitlines()[0], default_rows=200_000)
    dataset = load_dataset(ensure_dataset(config.data))
    losses = {"joint": config.training.loss, "task": "task", "mixed": "mixed"}
    rates: dict[str, list[float]] = {name: [] for name in losses}
    for _ in range(args.repeats):  # interleaved, best of each: the machine's load drifts
        for name, loss in losses.items():
            variant = dataclasses.replace(config, training=dataclasses.replace(config.training, loss=loss))
            rates[name].append(samples_per_second(variant, dataset, args.epochs))
    print(
        f"{config.name}: {args.rows} rows x {args.epochs} epochs, batch {config.training.batch_size}, "
        f"best of {args.repeats}"
    )
    joint = max(rates["joint"])
    for name, values in rates.items():
        print(f"{name:6s} loss: {max(values):9.0f} samples/s  ratio to joint {max(values) / joint:.3f}")
    print(f"target: task-space / joint >= 0.8 -> {'met' if max(rates['task']) / joint >= 0.8 else 'MISSED'}")


if __name__ == "__main__":
    main()
