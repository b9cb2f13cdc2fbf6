"""Data beyond memory (iklab.learning.streaming): every training row once per epoch in a new order, bounded
in-memory splits, the budget's decision, and streamed training matching in-memory training."""

import dataclasses
import math

import numpy as np
import pytest
from helpers import CENTER, HEALTHY

from data_gen.generate import generate
from iklab.core.regions import custom_region
from iklab.learning import metric_names as M
from iklab.learning.config import DataConfig, experiment_from_dict
from iklab.learning.datasets import Split, load_dataset
from iklab.learning.streaming import TrainStream, streaming_reason
from iklab.learning.training import train


@pytest.fixture(scope="module")
def parts(tmp_path_factory, jaco):
    """5000 rows in 8 parts of 700 (the last smaller)."""
    region = custom_region(jaco, CENTER - 0.3, CENTER + 0.3)
    return generate(jaco, region, 5000, 3, tmp_path_factory.mktemp("stream") / "ds", part_rows=700, progress=False)


def joints(split: Split) -> tuple[np.ndarray, np.ndarray]:
    return split.q, split.position  # an "encoding" that keeps the rows recognisable


def epoch_rows(stream: TrainStream) -> np.ndarray:
    return np.concatenate([q for q, _ in stream.blocks()])


def as_set(q: np.ndarray) -> np.ndarray:
    return q[np.lexsort(q.T[::-1])]


def test_a_streamed_epoch_reads_every_training_row_once_in_a_new_order(parts):
    train_q = load_dataset(parts).train.q
    stream = TrainStream(parts, load_dataset(parts).card, joints, seed=0, shuffle_rows=1500)
    assert len(stream) == len(train_q) == 4000
    first, second = epoch_rows(stream), epoch_rows(stream)
    np.testing.assert_array_equal(as_set(first), as_set(train_q))
    np.testing.assert_array_equal(as_set(second), as_set(train_q))
    # shuffled across parts, and differently each epoch
    assert not np.array_equal(first, second)
    part_of = {tuple(q): i // 560 for i, q in enumerate(train_q)}  # 560 training rows per part of 700
    first_parts = [part_of[tuple(q)] for q in first[:560]]
    assert len(set(first_parts)) >= 2


def test_train_rows_caps_the_stream_to_the_same_first_rows_each_epoch(parts):
    card = load_dataset(parts).card
    stream = TrainStream(parts, card, joints, seed=0, shuffle_rows=10_000, rows=1234)
    assert len(stream) == 1234
    expected = as_set(load_dataset(parts).train.q[:1234])
    for _ in range(2):
        np.testing.assert_array_equal(as_set(epoch_rows(stream)), expected)


def test_the_tf_dataset_rebatches_to_the_batch_size_with_a_known_length(parts):
    def encode(split):
        return split.position.astype(np.float32), np.sin(split.q).astype(np.float32)

    stream = TrainStream(parts, load_dataset(parts).card, encode, seed=0, shuffle_rows=1000)
    batches = stream.dataset(64)
    assert int(batches.cardinality()) == math.ceil(4000 / 64)
    sizes = [len(x) for x, y in batches.as_numpy_iterator()]
    assert sizes == [64] * (4000 // 64) + [4000 % 64]


def test_limits_load_only_the_first_rows_of_each_split(parts):
    full = load_dataset(parts)
    head = load_dataset(parts, {"train": 100, "val": 30, "test": None})
    assert (len(head.train), len(head.val), len(head.test)) == (100, 30, len(full.test))
    np.testing.assert_array_equal(head.train.q, full.train.q[:100])
    np.testing.assert_array_equal(head.val.quat, full.val.quat[:30])


def test_the_memory_budget_decides_unless_stream_is_set():
    card = {"n": 10_000_000}  # ~3.7 GB in memory
    assert streaming_reason(DataConfig(), card) is None  # under the 4 GB default
    reason = streaming_reason(DataConfig(memory_budget_gb=1.0), card)
    assert reason and "memory_budget_gb" in reason
    assert streaming_reason(DataConfig(stream=False, memory_budget_gb=1.0), card) is None
    assert streaming_reason(DataConfig(stream=True), {"n": 100}) == "data.stream is true"


@pytest.mark.slow
def test_streamed_training_reaches_the_in_memory_error(mlflow_store):
    errors, rows = {}, {}
    for stream in (False, True):
        config = experiment_from_dict({**HEALTHY, "data": {**HEALTHY["data"], "stream": stream}})
        result = train(dataclasses.replace(config, mlflow=dataclasses.replace(config.mlflow, log_model=False)))
        assert result.status == "finished", result.reason
        run = mlflow_store.get_run(result.run_id)
        rows[stream] = run.data.params["data.train_rows_used"]
        errors[stream] = result.metrics[M.TEST_POSITION_MEDIAN]
    assert rows[True] == rows[False] == str(len(result.dataset.train))  # every training row, each epoch
    # the same recipe on the same rows; only the shuffling differs. Measured, run seeds 0, 1, 2:
    # in memory 12.4, 13.8, 15.2 mm; streamed 12.9, 13.3, 15.3 mm (seed to seed: +-11%)
    assert errors[True] < 20 and abs(errors[True] - errors[False]) < 0.3 * errors[False], errors
