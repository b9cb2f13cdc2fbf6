"""Cost of iklab's per-epoch diagnostics: their share of the epoch time of a 3x256 MLP.

The diagnostics (dead units, R^2 on a ~4k-row probe, gradient and update norms) run once
per epoch; they should stay a small share of it (target: under 25%, measured below).

Run: .venv/bin/python bench/bench_diagnostics.py [--rows 20000] [--epochs 4]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from iklab.learning.diagnostics import DiagnosticsCallback  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Placed after the diagnostics, so its epoch time includes theirs."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._started)


def mlp(n_inputs, widths, n_outputs):
    """Functional MLP following the iklab.learning.models layer names (dense_i, act_i, output)."""
    inputs = keras.Input((n_inputs,))
    x = inputs
    for index, width in enumerate(widths, start=1):
        x = keras.layers.Dense(width, name=f"dense_{index}")(x)
        x = keras.layers.Activation("relu", name=f"act_{index}")(x)
    return keras.Model(inputs, keras.layers.Dense(n_outputs, name="output")(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(args.rows, 6)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(6, 6)))
    model = mlp(6, [256, 256, 256], 6)
    model.compile(optimizer="adam", loss="mse")
    diagnostics = DiagnosticsCallback(x[:4096], y[:4096], loss_fn="mse", grad_batch=(x[:256], y[:256]))
    timer = EpochTimer()
    model.fit(x, y, epochs=args.epochs, batch_size=256, verbose=0, callbacks=[diagnostics, timer])
    # the first epoch also traces the compiled probe and gradient functions: reported apart
    first = diagnostics.history[0]["diagnostics_seconds"]
    spent = sum(record["diagnostics_seconds"] for record in diagnostics.history[1:])
    epoch_seconds = sum(timer.seconds[1:])
    later = args.epochs - 1
    print(f"first epoch: diagnostics {first * 1000:.0f} ms of {timer.seconds[0]:.2f} s (tracing included)")
    print(
        f"epochs 2-{args.epochs}: diagnostics {spent / later * 1000:.0f} ms per {epoch_seconds / later:.2f} s "
        f"epoch = {spent / epoch_seconds:.1%} of the epoch time (target < 25%)"
    )


if __name__ == "__main__":
    main()
