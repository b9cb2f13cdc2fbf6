"""Ablations (iklab.ablations): the shipped file's rows all build and train, and a tiny run logs
its rows as nested MLflow runs with a table, the ensemble's errors from its averaged joints."""

import dataclasses
import math

import numpy as np
import pytest
import yaml
from helpers import StepClock, tiny_experiment

from iklab.learning import metric_names as M
from iklab.learning.config import ConfigError
from iklab.learning.datasets import ensure_dataset, load_dataset
from iklab.learning.models import TimeBudget
from iklab.learning.training import compile_model, prepare_arrays
from iklab.studies import ablations as A

SHIPPED = "experiments/ablations_jaco.yaml"
SHIPPED_FILES = {SHIPPED: 15, "experiments/ablations_puma560_full.yaml": 9}  # file: at least this many rows


@pytest.mark.parametrize("shipped", SHIPPED_FILES)
def test_every_shipped_row_builds_and_trains_two_steps(shipped, tmp_path, monkeypatch):
    file = A.load_ablations(shipped)
    assert file.budget_minutes > 0 and len(file.rows()) >= SHIPPED_FILES[shipped]
    configs = {row.name: file.experiment(row) for row in file.rows()}  # the base is relative to the repo
    monkeypatch.chdir(tmp_path)
    for row in file.rows():
        config = configs[row.name]
        assert config.training.time_budget_minutes == pytest.approx(file.budget_minutes / row.ensemble)
        small = dataclasses.replace(config.data, rows=600, path=None)
        config = dataclasses.replace(config, data=small)
        dataset = load_dataset(ensure_dataset(config.data))
        arrays = prepare_arrays(config, dataset)
        model = compile_model(config, arrays, dataset.robot)
        model.run_eagerly = True  # two steps: tracing the compiled step would cost more than running them
        batch = slice(0, 64)
        before = model.trainable_weights[0].numpy().copy()
        for _ in range(2):  # a warm-up's first step has a learning rate of 0
            loss = float(model.train_on_batch(arrays.x_train[batch], arrays.y_train[batch]))
        assert math.isfinite(loss) and loss > 0, row.name
        assert not np.array_equal(model.trainable_weights[0].numpy(), before), f"{row.name}: the step changed nothing"


def _write(tmp_path, text: dict) -> str:
    path = tmp_path / "ablations.yaml"
    path.write_text(yaml.safe_dump(text))
    return str(path)


def test_bad_files_are_one_line_errors(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_experiment()))
    cases = [
        ({"ablations": [{"name": "x", "change": {"model.wdth": 3}}]}, "unknown key model.wdth"),
        ({"ablations": [{"name": "baseline"}]}, "row names must be unique"),
        ({"ablations": [{"name": "x", "ensemble": 0}]}, r"ensemble must be >= 1"),
        ({"ablations": [{"nme": "x"}]}, "unknown key ablations\\[0\\].nme"),
        ({"budget_minutes": -1}, "budget_minutes must be > 0"),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigError, match=message):
            A.load_ablations(_write(tmp_path, {"base": str(base), **extra}))
    file = A.load_ablations(_write(tmp_path, {"base": str(base), "ablations": [{"name": "wide"}]}))
    with pytest.raises(ConfigError, match="no row named 'narrow'; rows: baseline, wide"):
        A.select(file, "narrow")
    assert [r.name for r in A.select(file, "wide")] == ["wide"]


@pytest.mark.slow
def test_a_tiny_ablation_logs_nested_runs_and_its_table(mlflow_store, tmp_path, monkeypatch):
    # the 6 s budget in steps (~220 batches a row, ~110 an ensemble member), whatever the load
    monkeypatch.setattr(TimeBudget, "clock", staticmethod(StepClock(0.025)))
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_experiment(rows=4000, evaluation={"knn_rows": 1000, "test_rows": 300})))
    path = _write(
        tmp_path,
        {
            "name": "tiny_ablations",
            "base": str(base),
            "budget_minutes": 0.1,
            "ablations": [
                {"name": "two nets", "ensemble": 2},
                {"name": "task loss", "change": {"training.loss": "task"}},
            ],
        },
    )
    file = A.load_ablations(path)
    lines = []
    parent_id, results = A.run_ablations(file, A.select(file, ""), progress=lines.append)
    assert [r.row.name for r in results] == ["baseline", "two nets", "task loss"]
    for r in results:
        assert 0 < r.metrics[M.TEST_POSITION_MEDIAN] < 200 and r.metrics["epochs"] >= 1
        assert r.metrics["train_seconds"] < 30  # the budget, not the epoch cap, ended each row
    parent = mlflow_store.get_run(parent_id)
    experiment = mlflow_store.get_experiment(parent.info.experiment_id)
    assert experiment.name == "ik-jaco-ablations"
    note = parent.data.tags["mlflow.note.content"]
    assert "| two nets | -, x2 networks |" in note and "| task loss | training.loss=task |" in note
    runs = mlflow_store.search_runs([experiment.experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert sorted(r.info.run_name for r in children) == ["baseline", "task loss", "two nets"]
    ensemble = next(r for r in children if r.info.run_name == "two nets")
    members = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == ensemble.info.run_id]
    assert len(members) == 2 and ensemble.data.metrics["ensemble"] == 2
    # the ensemble's error is its own (averaged joints), not a member's
    member_errors = [m.data.metrics[M.TEST_POSITION_MEDIAN] for m in members]
    assert ensemble.data.metrics[M.TEST_POSITION_MEDIAN] not in member_errors
    assert any("[3/3] task loss: test median" in line for line in lines)
