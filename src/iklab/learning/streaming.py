"""Training rows beyond memory: streamed from a dataset's Parquet parts through ``tf.data``.

A training whose dataset would not fit ``data.memory_budget_gb`` (or with ``data.stream: true``)
keeps in memory only samples (normalization, k-NN baseline, diagnostics), the validation and the
test rows, and reads its training rows part by part each epoch: parts in a new random order per
epoch, rows shuffled within a buffer of ``data.shuffle_buffer`` rows, encoded in blocks that
``tf.data`` rebatches and prefetches while the model trains. Memory then follows the buffer,
not the dataset: `bench/bench_stream.py` measures it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from iklab.learning.config import DataConfig
from iklab.learning.datasets import Split, read_part, split_rows_per_part

# What one dataset row costs in memory when a training holds it all. Measured: loading and
# encoding 2M rows of jaco (xyz_quat -> sincos, joint loss) peaked 279 B a row above the process's
# start (RSS; TensorFlow and MLflow already loaded); fit() converts the arrays to tensors
# once more, and richer encodings and the task-space loss's pose targets add columns.
BYTES_PER_ROW = 400
# A streamed training validates and tests on at most this many rows unless data.val_rows /
# evaluation.test_rows say otherwise, and keeps this many training rows in memory as samples.
EVAL_ROWS = 200_000
# Rows per block handed to tf.data (it rebatches them to the batch size).
BLOCK_ROWS = 16_384


def streaming_reason(cfg: DataConfig, card: dict) -> str | None:
    """Why the training rows are streamed (a line for the user), or None to hold them in memory."""
    if cfg.stream is False:
        return None
    if cfg.stream:
        return "data.stream is true"
    need = card["n"] * BYTES_PER_ROW / 2**30
    if need <= cfg.memory_budget_gb:
        return None
    return f"{card['n']} rows need ~{need:.1f} GB in memory, over data.memory_budget_gb = {cfg.memory_budget_gb:g}"


def eval_limits(cfg: DataConfig, test_rows: int | None) -> dict[str, int]:
    """Rows a streamed training loads into memory per split (the first ones)."""
    return {"train": EVAL_ROWS, "val": cfg.val_rows or EVAL_ROWS, "test": test_rows or EVAL_ROWS}


@dataclass
class TrainStream:
    """The training rows of a dataset, one shuffled pass per iteration of :meth:`dataset`.

    ``encode`` turns a Split into ``(inputs, targets)`` float32 arrays, as the in-memory path
    does. ``rows`` caps the training rows (``data.train_rows``): the first parts in file order
    that hold them, so every epoch sees the same rows.
    """

    path: Path
    card: dict
    encode: Callable[[Split], tuple[np.ndarray, np.ndarray]]
    seed: int
    shuffle_rows: int
    rows: int | None = None

    def __post_init__(self) -> None:
        per_part = split_rows_per_part(self.path, "train", self.card)
        left = sum(per_part) if self.rows is None else min(self.rows, sum(per_part))
        self.rows = left
        self.take: list[int] = []  # training rows read from each part used
        for count in per_part:
            if left == 0:
                break
            self.take.append(min(count, left))
            left -= self.take[-1]
        self.epoch = 0

    def __len__(self) -> int:
        return self.rows

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch: encoded ``(inputs, targets)`` blocks of at most BLOCK_ROWS rows."""
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        buffer: list[Split] = []
        for index in rng.permutation(len(self.take)):
            buffer.append(read_part(self.path, self.card, int(index), "train").head(self.take[index]))
            if sum(len(s) for s in buffer) >= self.shuffle_rows:
                yield from self._shuffled(buffer, rng)
                buffer = []
        if buffer:
            yield from self._shuffled(buffer, rng)

    def _shuffled(self, buffer: list[Split], rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = rng.permutation(sum(len(s) for s in buffer))
        rows = Split(*(np.concatenate([getattr(s, f) for s in buffer])[order] for f in ("q", "position", "quat")))
        x, y = self.encode(rows)
        for start in range(0, len(x), BLOCK_ROWS):
            yield x[start : start + BLOCK_ROWS], y[start : start + BLOCK_ROWS]

    def dataset(self, batch_size: int) -> tf.data.Dataset:
        """Batches of ``batch_size`` (the last one smaller), known length, prefetched."""
        x, y = self.encode(read_part(self.path, self.card, 0, "train").head(1))
        signature = (
            tf.TensorSpec((None, x.shape[1]), tf.float32),
            tf.TensorSpec((None, y.shape[1]), tf.float32),
        )
        batches = tf.data.Dataset.from_generator(self.blocks, output_signature=signature).rebatch(batch_size)
        steps = math.ceil(self.rows / batch_size)
        return batches.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(tf.data.AUTOTUNE)
