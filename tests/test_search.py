"""Small studies (tiny data, 1-2 epochs) against temporary MLflow and Optuna mlflow_store."""

import json
import os
import re
import subprocess
import sys

import mlflow
import numpy as np
import optuna
import pytest
import yaml
from helpers import CENTER, tiny_experiment
from optuna.trial import TrialState

from iklab.core.kinematics import fk
from iklab.learning.config import experiment_from_dict
from iklab.learning.robot_cost import RobotBudget, RobotCost
from iklab.robot.solver import IKSolver
from iklab.studies.registry import ComparisonRows, register_and_compare
from iklab.studies.search_file import load_search, make_study
from iklab.studies.search_study import PruneCallback, run_search, trial_run_name

BASE = tiny_experiment(rows=4000, model={"width": 32}, training={"epochs": 2})
GENEROUS_BUDGET = {"one_pose_vs_ik_lm": 1.0e6, "batch_vs_ik_lm": 1.0e-6, "batch_rows": 1000}


def write_search(tmp_path, space, study=None, name="search.yaml"):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    search = {
        "base": str(tmp_path / "base.yaml"),
        "study": {
            "name": "tiny-study",
            "storage": f"sqlite:///{tmp_path}/optuna.db",
            "n_trials": 2,
            "timeout_minutes": 5,
            "pruner": "none",
            "heartbeat_seconds": 2,
            **(study or {}),
        },
        "trial_overrides": {"training.epochs": 2},
        "final_overrides": {"training.epochs": 2},
        "space": space,
        # timing decides nothing here (a loaded machine must not flip a verdict): nothing is over it
        "robot_budget": GENEROUS_BUDGET,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(search))
    return path


def children(client, parent_id):
    runs = client.search_runs(
        [client.get_run(parent_id).info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    return sorted(runs, key=lambda r: r.info.start_time)


@pytest.mark.slow
def test_study_nests_trials_registers_a_champion_that_loads(mlflow_store, tmp_path, monkeypatch):
    # as under `mlflow run . -e search`: the project run exists and is named by MLFLOW_RUN_ID
    project = mlflow_store.create_run(mlflow_store.create_experiment("ik-jaco-search"), run_name="project")
    monkeypatch.setenv("MLFLOW_RUN_ID", project.info.run_id)
    config = load_search(
        write_search(
            tmp_path,
            {"model.width": {"choices": [16, 32]}, "optimizer.learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}},
        )
    )
    result = run_search(config)
    assert result.counts["complete"] == 2 and result.best_trial is not None
    assert result.parent_run_id == project.info.run_id
    parent = mlflow_store.get_run(result.parent_run_id)
    assert parent.info.run_name == "tiny-study" and parent.data.tags["role"] == "study"
    assert "mlflow.parentRunId" not in parent.data.tags and parent.info.status == "FINISHED"
    assert mlflow_store.get_experiment(parent.info.experiment_id).name == "ik-jaco-search"
    assert parent.data.params["study.name"] == "tiny-study" and parent.data.metrics["trials_complete"] == 2
    runs = children(mlflow_store, result.parent_run_id)
    trials = [r for r in runs if r.data.tags.get("role") != "final"]
    assert [r.info.run_name[:9] for r in trials] == ["t000 mlp ", "t001 mlp "]
    for run in trials:
        assert run.data.tags["study"] == "tiny-study" and run.data.tags["family"] == "mlp"
        assert run.data.tags["state"] == "complete" and "best_val_position_error_mm" in run.data.metrics
        assert run.data.params["trial_number"] in ("0", "1")
    study = optuna.load_study(study_name="tiny-study", storage=config.study.storage)
    assert {t.user_attrs["mlflow_run_id"] for t in study.trials} == {r.info.run_id for r in trials}
    final = [r for r in runs if r.data.tags.get("role") == "final"]
    assert len(final) == 1 and final[0].info.status == "FINISHED"
    artifacts = {a.path for a in mlflow_store.list_artifacts(result.parent_run_id)}
    artifacts |= {a.path for a in mlflow_store.list_artifacts(result.parent_run_id, "plots")}
    assert {
        "trials.csv",
        "summary.md",
        "plots/optimization_history.png",
        "plots/param_importances.png",
        "plots/params_vs_objective.png",
    } <= artifacts
    assert result.champion["promoted"] and result.champion["new_version"] == 1
    solver = IKSolver.load("models:/ik-jaco@champion", robot="jaco")
    assert np.all(np.isfinite(solver.predict(fk(solver.robot, np.tile(CENTER, (3, 1))))))
    version = mlflow_store.get_model_version_by_alias("ik-jaco", "champion")
    assert version.tags["promoted"] == "True" and version.tags["compared_with_version"] == "none"
    # robot-time cost: each trial's run beside its error, the front on the study's run, the registry
    assert {"robot_front.csv", "plots/robot_front.png"} <= artifacts
    for run in [*trials, *final]:
        metrics = run.data.metrics
        assert metrics["robot/one_pose_vs_ik_lm"] == pytest.approx(
            metrics["robot/one_pose_us"] / metrics["robot/ik_lm_us"]
        )
        assert metrics["robot/batch_vs_ik_lm"] > 0 and run.data.tags["robot_budget"].startswith("within (one pose")
    assert parent.data.metrics["champion/batch_vs_ik_lm"] == pytest.approx(
        final[0].data.metrics["robot/batch_vs_ik_lm"]
    )
    assert version.tags["within_robot_budget"] == "True" and "x ik_LM" in version.tags["robot_cost"]
    summary = mlflow_store.get_run(result.parent_run_id).data.tags["mlflow.note.content"]
    assert "**Robot budget:** one pose at most 1e+06x ik_LM's time" in summary
    assert "| trial | val median mm | one pose us | one pose / ik_LM | batch x ik_LM | within budget |" in summary
    # the champion's branches/* on the study's run, beside a full-range study's (the same names)
    parent = mlflow_store.get_run(result.parent_run_id)
    raw = final[0].data.metrics["test/position_error_mm_median"]
    assert parent.data.metrics["branches/raw_position_error_mm_median"] == pytest.approx(raw)
    assert parent.data.tags["branches"] == final[0].data.tags["branches"] == "one: a single answer over region custom"
    assert f"**Branches:** one: a single answer over region custom; raw median {raw:.2f} mm" in summary


@pytest.mark.slow
def test_a_configuration_over_the_robot_budget_costs_no_training(mlflow_store, tmp_path):
    path = write_search(tmp_path, {"model.width": {"choices": [16, 32]}}, {"name": "too-slow"})
    raw = yaml.safe_load(path.read_text())
    raw["robot_budget"] = {"batch_vs_ik_lm": 1.0e9, "batch_rows": 500}  # no network is a billion times faster
    path.write_text(yaml.safe_dump(raw))
    result = run_search(load_search(path))
    assert result.counts["pruned"] == 2 and result.counts["complete"] == 0 and result.best_trial is None
    study = optuna.load_study(study_name="too-slow", storage=f"sqlite:///{tmp_path}/optuna.db")
    for trial in study.trials:
        reason = trial.user_attrs["prune_reason"]
        assert reason.startswith("over the robot budget before training (the untrained network without refinement, ")
        assert "500-pose batch is" in reason and "(budget at least 1e+09x)" in reason
        run = mlflow_store.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["stop_reason"] == reason and run.data.tags["robot_budget"] == "over"
        assert "robot_before_training/batch_vs_ik_lm" in run.data.metrics
        assert not any(key.startswith("val") or key.startswith("test/") for key in run.data.metrics)  # never trained
    assert mlflow_store.search_registered_models() == []
    summary = mlflow_store.get_run(result.parent_run_id).data.tags["mlflow.note.content"]
    assert "(pruned: 2 over the robot budget before training)" in summary


@pytest.mark.slow
def test_pruned_and_failed_trials_record_their_reasons(mlflow_store, tmp_path):
    # a learning rate of 1e-7 cannot move the outputs: R^2 ~ 0 after the first epoch
    pruned = load_search(
        write_search(
            tmp_path,
            {"optimizer.learning_rate": {"choices": [1.0e-7]}},
            {"name": "pruned", "diagnostic_pruning_epochs": 1, "n_trials": 1, "finalize": False},
            "p.yaml",
        )
    )
    result = run_search(pruned)
    assert result.counts["pruned"] == 1 and result.best_trial is None
    trial = optuna.load_study(study_name="pruned", storage=pruned.study.storage).trials[0]
    assert trial.state == TrialState.PRUNED and "collapsed_to_mean" in trial.user_attrs["prune_reason"]
    run = mlflow_store.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.data.tags["state"] == "pruned" and "collapsed_to_mean" in run.data.tags["stop_reason"]

    failing = load_search(
        write_search(
            tmp_path,
            {"optimizer.learning_rate": {"choices": [1.0e12]}, "optimizer.name": {"choices": ["sgd"]}},
            {"name": "failing", "n_trials": 1, "finalize": False},
            "f.yaml",
        )
    )
    result = run_search(failing)
    assert result.counts["failed"] == 1
    trial = optuna.load_study(study_name="failing", storage=failing.study.storage).trials[0]
    assert trial.state == TrialState.FAIL and "NaN" in trial.user_attrs["fail_reason"]
    run = mlflow_store.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["state"] == "failed"


def test_prune_callback_reasons():
    study = optuna.create_study()
    trial = study.ask()
    callback = PruneCallback(trial, diagnostic_epochs=2)
    callback.set_model(type("M", (), {"stop_training": False})())
    callback.on_epoch_end(0, {"val_position_error_mm": 5.0, "dead_fraction/act_1": 1.0})
    assert callback.stop_reason is None  # too early for diagnostics
    callback.on_epoch_end(1, {"val_position_error_mm": 5.0, "dead_fraction/act_1": 1.0, "r2_mean": 0.9})
    assert callback.stop_reason.startswith("dead_layer: act_1") and callback.model.stop_training
    callback = PruneCallback(trial, diagnostic_epochs=1)
    callback.set_model(type("M", (), {"stop_training": False})())
    callback.on_epoch_end(3, {"val_position_error_mm": 5.0, "r2_mean": 0.01})
    assert callback.stop_reason.startswith("collapsed_to_mean")


@pytest.mark.slow
def test_champion_moves_only_when_better(mlflow_store, tmp_path):
    from iklab.learning.training import train

    mlflow.set_experiment("promotion")
    experiment = experiment_from_dict(BASE)
    first = train(experiment, log_model=True)
    test = first.dataset.test.head(experiment.evaluation.test_rows)
    rows = ComparisonRows(first.dataset.robot, test.poses(), test.q, first.dataset.digest)
    error = first.metrics["test/position_error_mm_median"]

    def register(median):
        return register_and_compare("ik-test", first.model_uri, first.run_id, median, rows)

    decision = register(error)
    assert decision["promoted"] and decision["previous_version"] is None
    decision = register(error + 10)  # worse
    assert not decision["promoted"] and decision["previous_version"] == 1
    assert str(mlflow_store.get_model_version_by_alias("ik-test", "champion").version) == "1"
    # the champion's recorded data differ: it is re-evaluated on the same test rows, not trusted
    mlflow_store.set_model_version_tag("ik-test", "1", "dataset_digest", "something-else")
    decision = register(error - 1)  # better
    assert decision["promoted"] and decision["new_version"] == 3
    assert decision["previous_test_median_mm"] == pytest.approx(error, rel=1e-3)
    assert str(mlflow_store.get_model_version_by_alias("ik-test", "champion").version) == "3"
    # the robot budget: a more accurate model over it never takes the alias; a champion over it
    # gives way to one within it, even a less accurate one
    budget = RobotBudget()
    fast, slow = RobotCost(50.0, 3.0, 80.0, 10_000, True), RobotCost(120.0, 3.0, 80.0, 10_000, True)
    decision = register_and_compare("ik-test", first.model_uri, first.run_id, error - 5, rows, cost=slow, budget=budget)
    assert not decision["promoted"] and "over the robot budget (one pose 120 us is 1.50x" in decision["summary_line"]
    assert str(mlflow_store.get_model_version_by_alias("ik-test", "champion").version) == "3"
    mlflow_store.set_model_version_tag("ik-test", "3", "robot_cost_json", json.dumps(slow.to_dict()))
    decision = register_and_compare("ik-test", first.model_uri, first.run_id, error + 5, rows, cost=fast, budget=budget)
    assert decision["promoted"] and "(over the robot budget)" in decision["summary_line"]
    version = mlflow_store.get_model_version_by_alias("ik-test", "champion")
    assert str(version.version) == "5" and version.tags["within_robot_budget"] == "True"


@pytest.mark.slow
def test_multi_fidelity_study_tries_the_enqueued_first_prunes_at_rungs_and_completes(mlflow_store, tmp_path):
    space = {"optimizer.learning_rate": {"choices": [1.0e-2, 1.0e-5]}, "model.width": {"choices": [16, 32]}}
    path = write_search(
        tmp_path,
        space,
        {
            "name": "halving",
            "n_trials": 5,
            "finalize": False,
            "pruner": "successive_halving",
            "pruner_warmup_epochs": 1,
            "pruner_reduction_factor": 2,
            "diagnostic_pruning_epochs": 10,  # only the pruner stops trials here
        },
    )
    raw = yaml.safe_load(path.read_text())
    raw["trial_overrides"] = {"training.epochs": 4}
    raw["enqueue"] = [{"optimizer.learning_rate": 1.0e-2, "model.width": 32}]
    path.write_text(yaml.safe_dump(raw))
    config = load_search(path)
    result = run_search(config)
    assert result.counts["complete"] >= 1 and result.counts["pruned"] >= 1
    assert result.counts["complete"] + result.counts["pruned"] == 5
    study = optuna.load_study(study_name="halving", storage=config.study.storage)
    first = study.trials[0]
    assert first.params == {"optimizer.learning_rate": 1.0e-2, "model.width": 32} and first.state == TrialState.COMPLETE
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert all(t.last_step < 3 for t in pruned)  # stopped at a rung, before the last epoch
    assert all(
        "not among the best at this rung (SuccessiveHalvingPruner)" in t.user_attrs["prune_reason"] for t in pruned
    )
    assert 0 < result.trials_seconds <= result.wall_seconds
    summary = mlflow_store.get_run(result.parent_run_id).data.tags["mlflow.note.content"]
    assert "**Budget:**" in summary and "min of trials (pruned: " in summary
    # resuming does not enqueue the known configuration twice
    run_search(load_search(path, {"n_trials": 6}))
    study = optuna.load_study(study_name="halving", storage=config.study.storage)
    enqueued = [t for t in study.trials if t.system_attrs.get("fixed_params")]
    assert len(enqueued) == 1


def test_bad_search_files(tmp_path):
    from iklab.learning.config import ConfigError

    with pytest.raises(ConfigError, match="needs `choices"):
        load_search(write_search(tmp_path, {"model.width": {"values": [1]}}))
    with pytest.raises(ConfigError, match="role must be scientific or nuisance"):
        load_search(write_search(tmp_path, {"model.width": {"choices": [1], "role": "fixed"}}))
    bad = write_search(tmp_path, {"model.width": {"choices": [16, 32]}})
    raw = yaml.safe_load(bad.read_text())
    raw["trial_overrides"] = {"model.widht": 3}
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="unknown key model.widht"):
        load_search(bad)
    raw["trial_overrides"] = {}
    for enqueued, message in (
        ({"model.depth": 3}, r"enqueue\[0\]: model.depth is not in the space"),
        ({"model.width": 64}, r"model.width=64 is not one of \[16, 32\]"),
    ):
        raw.update(space={"model.width": {"choices": [16, 32]}}, enqueue=[enqueued])
        bad.write_text(yaml.safe_dump(raw))
        with pytest.raises(ConfigError, match=message):
            load_search(bad)
    raw.update(enqueue=[], study={**raw["study"], "pruner": "halving"})
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="study.pruner must be median, successive_halving, hyperband or none"):
        make_study(load_search(bad))
    assert (
        trial_run_name(7, experiment_from_dict({**BASE, "model": {"depth": 4, "width": 256, "batch_norm": "before"}}))
        == "t007 mlp 4x256 relu bn-before"
    )


@pytest.mark.parametrize(
    ("space", "words"),
    [
        ({}, "space is empty: nothing to search"),
        ({"optimizer.learning_rate": {"low": 0, "high": 1e-2, "log": True}}, "a log scale needs low > 0, got 0"),
        ({"optimizer.learning_rate": {"low": -1e-3, "high": 1e-2, "log": True}}, "a log scale needs low > 0"),
        ({"model.width": {"low": 5, "high": 2}}, "low must be below high, got low 5, high 2"),
        ({"model.activation": {"choices": []}}, "choices must be a non-empty list, got []"),
        ({"model.activation": {"choices": ["relu", "nope"]}}, "model.activation must be one of relu"),
        ({"model.widht": {"choices": [16, 32]}}, "unknown key model.widht"),
        ({"model.width": {"low": "a", "high": "b"}}, "space.model.width: low must be a number, got 'a'"),
        ({"model.depth": {"low": 1, "high": 3, "step": 0}}, "step must be > 0"),
    ],
)
def test_a_bad_search_space_is_one_line_before_the_study(tmp_path, space, words):
    """Checked when the file loads (no study, no TensorFlow): every choice and both ends of a
    range build a valid experiment."""
    from iklab.learning.config import ConfigError

    path = write_search(tmp_path, space)
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_search(path)
    assert not (tmp_path / "optuna.db").exists()


def test_the_files_own_final_overrides_are_checked_when_it_loads(tmp_path):
    from iklab.learning.config import ConfigError

    path = write_search(tmp_path, {"model.width": {"choices": [8]}})
    raw = yaml.safe_load(path.read_text())
    raw["final_overrides"] = {"training.time_budget_minutes": -1}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="training.time_budget_minutes must be > 0, got -1"):
        load_search(path)


def test_the_study_storage_is_never_mlflows_database(mlflow_store, tmp_path):
    from iklab.learning.config import ConfigError

    mlflow_store.create_experiment("x")  # MLflow's tables now exist in tmp_path/mlflow.db
    tables = _tables(tmp_path / "mlflow.db")
    path = write_search(tmp_path, {"model.width": {"choices": [8]}}, {"storage": f"sqlite:///{tmp_path}/mlflow.db"})
    with pytest.raises(ConfigError, match="is MLflow's tracking database: give Optuna its own"):
        make_study(load_search(path))
    assert _tables(tmp_path / "mlflow.db") == tables  # nothing of Optuna's written into it


def _tables(path):
    import sqlite3

    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_study_whose_every_trial_failed_ends_its_parent_run_failed(mlflow_store, tmp_path, monkeypatch):
    from iklab.studies import search_study

    def broken(config, **kwargs):
        raise RuntimeError("the trial's training broke")

    monkeypatch.setattr(search_study, "train", broken)
    path = write_search(tmp_path, {"model.width": {"choices": [8, 16]}}, {"name": "doomed", "finalize": False})
    result = run_search(load_search(path))
    assert result.counts["failed"] == 2 and result.best_trial is None
    parent = mlflow_store.get_run(result.parent_run_id)
    assert parent.info.status == "FAILED" and parent.data.tags["failure_reason"].startswith("every trial failed (2)")


def test_a_worker_losing_sqlites_schema_race_retries(tmp_path, monkeypatch):
    """Two workers opening a fresh SQLite study at once: the loser's schema insert fails on
    alembic_version's unique key; it retries and opens the study the winner made."""
    from sqlalchemy.exc import IntegrityError

    from iklab.studies import search_file

    real, calls = search_file.ResilientRDBStorage, []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: alembic_version.version_num"))
        return real(*args, **kwargs)

    monkeypatch.setattr(search_file, "ResilientRDBStorage", racing)
    study = make_study(load_search(write_search(tmp_path, {"model.width": {"choices": [8]}})))
    assert len(calls) == 2 and study.study_name == "tiny-study"


def test_workers_opening_a_study_together_draw_different_configurations(tmp_path):
    """Two workers open the study at the same moment (same stored trial count) and alternate
    trials: each trial's draws are seeded by its number, so no configuration repeats; one
    worker alone is reproducible."""
    from iklab.studies.search_study import sample_params

    space = {
        "model.width": {"choices": [8, 16, 32, 64]},
        "optimizer.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
    }
    config = load_search(write_search(tmp_path, space, {"name": "together"}))
    workers = [make_study(config), make_study(config)]
    drawn = []
    for i in range(12):
        trial = workers[i % 2].ask()
        drawn.append(tuple(sorted(sample_params(trial, space).items())))
    assert len(set(drawn)) == len(drawn), drawn
    again = load_search(write_search(tmp_path, space, {"name": "alone", "storage": f"sqlite:///{tmp_path}/b.db"}))
    replay = [tuple(sorted(sample_params(make_study(again).ask(), space).items())) for _ in range(3)]
    assert replay == drawn[:3]  # same seed, same trial numbers: the same draws


def test_a_trial_names_its_mlflow_run_before_training(mlflow_store, tmp_path, monkeypatch):
    """The run id reaches the trial when the run starts: a worker that dies mid-training leaves
    a trial that links to its run."""
    import iklab.studies.search_study as study_module

    def crashing_train(*args, on_run_start=None, **kwargs):
        on_run_start("run-that-was-started")
        raise RuntimeError("the process dies here")

    monkeypatch.setattr(study_module, "train", crashing_train)
    config = load_search(write_search(tmp_path, {"model.width": {"choices": [8]}}, {"n_trials": 1, "finalize": False}))
    run_search(config)
    (trial,) = optuna.load_study(study_name="tiny-study", storage=f"sqlite:///{tmp_path}/optuna.db").trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["mlflow_run_id"] == "run-that-was-started"


@pytest.mark.slow
def test_a_finished_study_reruns_as_a_no_op(mlflow_store, tmp_path, capsys):
    path = write_search(tmp_path, {"model.width": {"choices": [16]}}, {"name": "done", "n_trials": 1})
    first = run_search(load_search(path))
    assert first.champion["new_version"] == 1
    # the UI shows the study's summary as the parent run's description, in a training experiment
    parent = mlflow_store.get_run(first.parent_run_id)
    assert parent.data.tags["mlflow.note.content"] == mlflow.artifacts.load_text(
        f"runs:/{first.parent_run_id}/summary.md"
    )
    experiment = mlflow_store.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"].startswith("Optuna architecture searches")
    from iklab.search import main

    assert main(["--experiment", str(path)]) == 0
    assert "already has 1 of its 1 trials and its champion decision" in capsys.readouterr().out
    storage = f"sqlite:///{tmp_path}/optuna.db"
    trials = optuna.load_study(study_name="done", storage=storage).trials
    assert len(trials) == 1
    # what optuna-dashboard shows: the one study (its finalize claim released), its objective named
    summaries = optuna.get_all_study_summaries(storage)
    assert [s.study_name for s in summaries] == ["done"]
    assert optuna.load_study(study_name="done", storage=storage).metric_names == [
        "validation median position error (mm)"
    ]
    assert [int(v.version) for v in mlflow_store.search_model_versions("name = 'ik-jaco'")] == [1]


def test_a_held_claim_is_reported_not_taken(mlflow_store, tmp_path):
    from iklab.studies.search_study import claim_finalize

    config = load_search(write_search(tmp_path, {"model.width": {"choices": [8]}}, {"name": "claimed"}))
    study = make_study(config)
    assert claim_finalize(study) is None  # ours
    holder = claim_finalize(make_study(config))  # a second worker
    assert f"process {os.getpid()}" in holder and "'claimed:finalize'" in holder
    # a holder that died on this host (an interrupted finalize) is taken over by the rerun
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    optuna.load_study(study_name="claimed:finalize", storage=config.study.storage).set_user_attr("pid", dead.pid)
    assert claim_finalize(make_study(config)) is None
    claim = optuna.load_study(study_name="claimed:finalize", storage=config.study.storage)
    assert claim.user_attrs["pid"] == os.getpid()


def test_ui_links_open_the_training_view(mlflow_store):
    from iklab.learning.experiment_pages import describe_experiment, experiment_link

    experiment_id = mlflow_store.create_experiment("ik-ur5-train")
    describe_experiment(experiment_id, mlflow_store)
    tags = mlflow_store.get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.note.content"].startswith("Single trainings")
    mlflow_store.set_experiment_tag(experiment_id, "mlflow.note.content", "mine")
    describe_experiment(experiment_id, mlflow_store)  # a user's own description is kept
    assert mlflow_store.get_experiment(experiment_id).tags["mlflow.note.content"] == "mine"
    assert experiment_link(5000, experiment_id) == (
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}?workflowType=machine_learning"
    )


class _RacedClient:
    """An MLflow client whose tag writes lose a race: before each of the first `losses` writes,
    a rival worker writes the tag (if `rival`), then the write fails on the tag's unique key, as
    MLflow's SQL store does when several search workers start together on one server."""

    def __init__(self, store, losses, rival):
        self.store, self.losses, self.rival, self.writes = store, losses, rival, 0

    def get_experiment(self, experiment_id):
        return self.store.get_experiment(experiment_id)

    def set_experiment_tag(self, experiment_id, key, value):
        from mlflow.exceptions import MlflowException

        self.writes += 1
        if self.losses:
            self.losses -= 1
            if self.rival:
                self.store.set_experiment_tag(experiment_id, key, value)
            raise MlflowException("duplicate key value violates unique constraint experiment_tag_pk")
        self.store.set_experiment_tag(experiment_id, key, value)


def test_workers_describing_one_experiment_at_once_do_not_fail(mlflow_store):
    from mlflow.exceptions import MlflowException

    from iklab.learning.experiment_pages import describe_experiment

    # the rival's tags are kept, nothing is written twice
    experiment_id = mlflow_store.create_experiment("ik-jaco-search")
    raced = _RacedClient(mlflow_store, losses=2, rival=True)
    describe_experiment(experiment_id, raced)
    tags = mlflow_store.get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.note.content"].startswith("Optuna architecture searches")
    assert raced.writes == 2
    # a failed write that left the tag absent is tried once more
    experiment_id = mlflow_store.create_experiment("ik-ur5-search")
    raced = _RacedClient(mlflow_store, losses=1, rival=False)
    describe_experiment(experiment_id, raced)
    assert mlflow_store.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert raced.writes == 3
    # and a store that keeps failing is not hidden
    experiment_id = mlflow_store.create_experiment("ik-kuka-search")
    with pytest.raises(MlflowException, match="unique"):
        describe_experiment(experiment_id, _RacedClient(mlflow_store, losses=2, rival=False))


def test_a_trial_past_n_trials_is_not_run(mlflow_store, tmp_path):
    # another worker's trial is RUNNING and fills the study: this worker starts none
    config = load_search(
        write_search(
            tmp_path,
            {"model.width": {"choices": [16, 32]}},
            {"name": "full", "n_trials": 1, "finalize": False, "heartbeat_seconds": 1},
        )
    )
    study = make_study(config)
    others = study.ask()  # RUNNING in "another worker"
    result = run_search(config, study)
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == [0, 1] and trials[0].number == others.number
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs["surplus"] is True
    assert "mlflow_run_id" not in trials[1].user_attrs  # nothing trained, no run
    assert result.counts == {"complete": 0, "pruned": 0, "failed": 0, "running": 1}
