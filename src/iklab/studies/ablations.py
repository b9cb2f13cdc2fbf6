"""Ablations: one change at a time against a fixed baseline, every row trained for the same
wall-clock budget, in the MLflow experiment ``ik-<robot>-ablations`` (one parent run per
invocation, one nested run per row). `make ablations`; its command line is
`python -m iklab.ablations`.

An ablations file:

    name: ablations_jaco
    base: experiments/jaco_mlp.yaml   # the experiment every row starts from
    budget_minutes: 3                 # training time of every row (training.time_budget_minutes)
    baseline: {KEY: VALUE, ...}       # overrides that make the fixed baseline
    ablations:                        # the rows after the baseline
      - name: batch 256
        change: {training.batch_size: 256}
      - name: ensemble of 3
        ensemble: 3                   # 3 networks, each for budget / 3, predictions averaged

A row's budget sets its epochs from the throughput it measures first, so every row gets the
same wall-clock time whatever its batch size, width or data size (``train_seconds`` in the
table is what it really took). Errors are on the test split: FK of the predicted joints.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from iklab.learning import metric_names as M
from iklab.learning.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    at_least,
    build_dataclass,
    experiment_from_dict,
    positive,
    read_yaml,
)


@dataclass(frozen=True)
class Ablation:
    name: str
    change: dict = field(default_factory=dict)  # "section.key" -> value, on top of the baseline
    ensemble: int = at_least(1, default=1)  # networks trained (each for budget / ensemble) and averaged


@dataclass(frozen=True)
class AblationsFile:
    name: str
    base: str
    budget_minutes: float = positive(default=3.0)
    baseline: dict = field(default_factory=dict)
    ablations: tuple[Ablation, ...] = ()
    source: str = ""

    def rows(self) -> list[Ablation]:
        """The baseline first, then every ablation."""
        return [Ablation("baseline"), *self.ablations]

    def experiment(self, row: Ablation, member: int = 0) -> ExperimentConfig:
        """The validated experiment of ``row`` (of its ``member``-th network for an ensemble)."""
        raw = read_yaml(self.base)
        raw.setdefault("name", os.path.splitext(os.path.basename(self.base))[0])
        overrides = {
            **self.baseline,
            **row.change,
            "training.time_budget_minutes": self.budget_minutes / row.ensemble,
            "mlflow.log_model": False,
        }
        config = experiment_from_dict(apply_overrides(raw, overrides, self.source), f"{self.source}: {row.name}")
        return replace(config, seed=config.seed + member)


def load_ablations(path: str | os.PathLike, budget_minutes: float | None = None) -> AblationsFile:
    """Read and check an ablations file: every row's experiment is validated now, not at its turn."""
    raw = read_yaml(path)
    raw.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    if budget_minutes is not None:
        raw["budget_minutes"] = budget_minutes
    file = build_dataclass(AblationsFile, {**raw, "source": str(path)}, str(path))
    names = [row.name for row in file.rows()]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: row names must be unique (baseline is taken)")
    for row in file.rows():
        file.experiment(row)
    return file


def select(file: AblationsFile, only: str) -> list[Ablation]:
    """The rows named in ``only`` (comma-separated; empty: all), in the file's order."""
    rows = file.rows()
    if not only:
        return rows
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(wanted) - {row.name for row in rows})
    if unknown:
        raise ConfigError(f"{file.source}: no row named {unknown[0]!r}; rows: {', '.join(r.name for r in rows)}")
    return [row for row in rows if row.name in wanted]


@dataclass
class RowResult:
    row: Ablation
    metrics: dict[str, float]  # test/* of the row's model (or ensemble), train_seconds, epochs
    run_id: str


def run_ablations(
    file: AblationsFile, rows: list[Ablation], *, progress: Callable[[str], None] = print
) -> tuple[str, list[RowResult]]:
    """Train every row under one parent run; returns its id and the rows' results."""
    import mlflow

    from iklab.learning.run_logging import training_run

    robot = file.experiment(rows[0]).data.robot_name
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    results: list[RowResult] = []
    with training_run(f"{file.name} {stamp}", f"ik-{robot}-ablations") as parent:
        mlflow.set_tags({"role": "ablations", "robot": robot})
        params = {"file": file.source, "budget_minutes": file.budget_minutes, "base": file.base}
        mlflow.log_params({f"ablations.{key}": value for key, value in params.items()})
        for index, row in enumerate(rows):
            progress(f"[{index + 1}/{len(rows)}] {row.name}: {_change_text(row)}")
            results.append(_run_row(file, row, parent.info.run_id))
            m = results[-1].metrics
            progress(
                f"[{index + 1}/{len(rows)}] {row.name}: test median {m[M.TEST_POSITION_MEDIAN]:.2f} mm, "
                f"{m[M.TEST + M.ROTATION_MEDIAN]:.2f} deg in {m['train_seconds']:.0f} s"
            )
        table = results_markdown(file, results)
        mlflow.log_text(table, "ablations.md")
        mlflow.set_tag("mlflow.note.content", table)
    return parent.info.run_id, results


def _run_row(file: AblationsFile, row: Ablation, parent_run_id: str) -> RowResult:
    from iklab.learning.training import train

    tags = {"role": "ablation", "ablation": row.name}
    if row.ensemble == 1:
        result = train(file.experiment(row), parent_run_id=parent_run_id, run_name=row.name, tags=tags)
        _raise_unless_finished(result, row)
        metrics = dict(result.metrics)
        metrics["epochs"] = float(len(result.history))
        return RowResult(row, metrics, result.run_id)
    return _run_ensemble(file, row, parent_run_id, tags)


def _raise_unless_finished(result: object, row: Ablation) -> None:
    if result.status != "finished":
        raise RuntimeError(f"ablation {row.name!r}: training {result.status}: {result.reason}")


def _run_ensemble(file: AblationsFile, row: Ablation, parent_run_id: str, tags: dict) -> RowResult:
    """``row.ensemble`` networks (seeds seed, seed+1, ...) trained one after another, each for
    budget / ensemble; their joints averaged on the circle (mean of sin and cos)."""
    import mlflow

    from iklab.learning.run_logging import training_run
    from iklab.learning.task_errors import task_space_errors
    from iklab.learning.training import prepare_arrays, train
    from iklab.robot.solver import predict_joints

    sines, cosines, seconds, epochs = 0.0, 0.0, 0.0, 0
    with training_run(row.name, "", parent_run_id=parent_run_id, tags=tags) as run:
        for member in range(row.ensemble):
            config = file.experiment(row, member)
            result = train(
                config, parent_run_id=run.info.run_id, run_name=f"{row.name}: member {member + 1}", tags=tags
            )
            _raise_unless_finished(result, row)
            arrays = prepare_arrays(config, result.dataset)
            q = predict_joints(result.model, arrays.x_test, config.data.output_encoding)
            sines, cosines = sines + np.sin(q), cosines + np.cos(q)
            seconds += result.train_seconds
            epochs += len(result.history)
        q_mean = np.arctan2(sines, cosines)
        metrics = task_space_errors(result.dataset.robot, q_mean, arrays.q_test).summary(M.TEST)
        metrics.update({"train_seconds": seconds, "epochs": float(epochs), "ensemble": float(row.ensemble)})
        mlflow.log_metrics(metrics)
    return RowResult(row, metrics, run.info.run_id)


def _change_text(row: Ablation) -> str:
    text = ", ".join(f"{key}={value}" for key, value in row.change.items()) or "-"
    return f"{text}, x{row.ensemble} networks" if row.ensemble > 1 else text


def results_markdown(file: AblationsFile, results: list[RowResult]) -> str:
    """The table docs/results.md shows: each row's test errors and time, and the change against the
    baseline's median."""
    base = next((r.metrics[M.TEST_POSITION_MEDIAN] for r in results if r.row.name == "baseline"), None)
    lines = [
        f"# {file.name}: {file.budget_minutes:g} min of training per row (`{file.source}`)",
        "",
        "| row | change | median mm | p95 mm | median deg | vs baseline | train s | epochs |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        m = r.metrics
        median = m[M.TEST_POSITION_MEDIAN]
        versus = f"{median / base:.2f}x" if base else "-"
        lines.append(
            f"| {r.row.name} | {_change_text(r.row)} | {median:.2f} | {m[M.TEST + M.POSITION_P95]:.2f} | "
            f"{m[M.TEST + M.ROTATION_MEDIAN]:.2f} | {versus} | {m['train_seconds']:.0f} | {m['epochs']:.0f} |"
        )
    return "\n".join(lines) + "\n"
