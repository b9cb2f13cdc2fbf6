"""Study figures on small in-memory Optuna studies with complete, pruned, failed and running trials."""

import io
import math
import subprocess
import sys
import warnings

import matplotlib
import numpy as np
import optuna
import pytest
from matplotlib.figure import Figure
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from iklab.studies.study_plots import (
    EDGE_WARNING,
    VALUE_LABEL,
    edge_warnings,
    optimization_history,
    param_importances,
    params_vs_objective,
    trials_table,
)

PARAMS = ["learning_rate", "depth", "activation"]
ACTIVATION_PENALTY_MM = {"relu": 0.0, "tanh": 1.0, "gelu": 0.5}
FAILING_TRIAL = 5


def _search_objective(best_log10_learning_rate):
    """Fake IK training: error (mm) smallest at that learning rate and depth 3; every 4th trial prunes."""

    def objective(trial):
        learning_rate = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        depth = trial.suggest_int("depth", 1, 5)
        activation = trial.suggest_categorical("activation", list(ACTIVATION_PENALTY_MM))
        if trial.number == FAILING_TRIAL:
            raise RuntimeError("simulated out-of-memory")
        error_mm = (
            2.0
            + 8.0 * abs(math.log10(learning_rate) - best_log10_learning_rate)
            + 0.5 * (depth - 3) ** 2
            + ACTIVATION_PENALTY_MM[activation]
        )
        trial.set_user_attr("rotation_error_deg", error_mm / 10)
        for epoch in range(3):
            trial.report(error_mm * (3 - epoch), step=epoch)  # worse early, like a learning curve
            if trial.number % 4 == 3 and epoch == 1:
                raise optuna.TrialPruned()
        return error_mm

    return objective


def _study(best_log10_learning_rate, n_trials):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(_search_objective(best_log10_learning_rate), n_trials=n_trials, catch=(RuntimeError,))
    return study


@pytest.fixture(scope="module")
def study():
    """Optimum mid-range everywhere (learning rate 10^-2.5 in [1e-4, 1e-1]); one trial left running."""
    study = _study(best_log10_learning_rate=-2.5, n_trials=30)
    study.ask()
    return study


@pytest.fixture(scope="module")
def edge_study():
    """Optimum at the lower bound of the learning rate range (1e-4), depth optimum still in the middle."""
    return _study(best_log10_learning_rate=-4.0, n_trials=80)


def _one_trial_study():
    return _study(best_log10_learning_rate=-2.5, n_trials=1)


def _states(study):
    return {state: study.get_trials(deepcopy=False, states=(state,)) for state in optuna.trial.TrialState}


def _by_gid(ax, gid):
    return [artist for artist in [*ax.collections, *ax.lines] if artist.get_gid() == gid]


def _panels(figure):
    return {ax.get_title().split("\n")[0]: ax for ax in figure.axes}


def test_fixture_study_has_every_trial_state(study):
    states = _states(study)
    assert len(states[optuna.trial.TrialState.FAIL]) == 1
    assert len(states[optuna.trial.TrialState.RUNNING]) == 1
    assert len(states[optuna.trial.TrialState.PRUNED]) >= 5
    assert len(states[optuna.trial.TrialState.COMPLETE]) >= 15


def test_optimization_history_shows_complete_pruned_and_running_best(study):
    figure = optimization_history(study, title="jaco search")
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    ax = figure.axes[0]
    assert ax.get_ylabel() == VALUE_LABEL and "(mm)" in ax.get_ylabel()
    assert ax.get_xlabel() == "trial number" and ax.get_yscale() == "log"
    assert figure.get_suptitle() == "jaco search"
    states = _states(study)
    n_pruned = len(states[optuna.trial.TrialState.PRUNED])
    assert all(note in ax.get_title() for note in (f"{n_pruned} pruned", "1 failed", "1 running"))

    (pruned,) = _by_gid(ax, "pruned")
    expected = {(t.number, t.intermediate_values[t.last_step]) for t in states[optuna.trial.TrialState.PRUNED]}
    assert {tuple(point) for point in pruned.get_offsets()} == expected
    (complete,) = _by_gid(ax, "complete")
    assert len(complete.get_offsets()) == len(states[optuna.trial.TrialState.COMPLETE])
    (running_best,) = _by_gid(ax, "running_best")
    best_so_far = running_best.get_ydata()
    assert np.all(np.diff(best_so_far) <= 0) and best_so_far[-1] == pytest.approx(study.best_value)
    legend_texts = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert any(text.startswith("pruned") for text in legend_texts)


def test_optimization_history_takes_the_value_label(study):
    figure = optimization_history(study, value_label="test median position error (mm)")
    assert figure.axes[0].get_ylabel() == "test median position error (mm)"


def test_param_importances_ranks_every_parameter(study):
    figure = param_importances(study, title="jaco search")
    assert len(figure.axes) == 1
    ax = figure.axes[0]
    assert {label.get_text() for label in ax.get_yticklabels()} == set(PARAMS)
    assert sum(bar.get_width() for bar in ax.patches) == pytest.approx(1.0)
    assert "importance" in ax.get_xlabel()
    # The learning rate dominates this objective; it must be the top bar.
    assert ax.get_yticklabels()[-1].get_text() == "learning_rate"


def test_param_importances_draws_optunas_values(study):
    # The computation is the library's; only the drawing is ours.
    ax = param_importances(study).axes[0]
    drawn = {label.get_text(): bar.get_width() for label, bar in zip(ax.get_yticklabels(), ax.patches, strict=True)}
    assert drawn == pytest.approx(dict(optuna.importance.get_param_importances(study)))


def test_figures_leave_no_pyplot_figures_or_global_style_behind(study):
    # Why the drawing is not optuna.visualization.matplotlib: that registers pyplot figures and
    # switches the whole process to the ggplot style.
    rc_before = {key: str(value) for key, value in matplotlib.rcParams.items()}
    figures = [make_figure(study) for make_figure in FIGURES]
    assert all(figure.canvas.manager is None for figure in figures)  # not registered with pyplot
    assert {key: str(value) for key, value in matplotlib.rcParams.items()} == rc_before
    code = "import sys, iklab.studies.study_plots; print('matplotlib.pyplot' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def _message(figure):
    return "\n".join(text.get_text() for text in figure.texts)


def _constant_parameter_study():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda trial: trial.suggest_float("dropout", 0.2, 0.2) + trial.number, n_trials=3)
    return study


@pytest.mark.parametrize(
    "make_study, reason",
    [
        (optuna.create_study, "at least 2 complete trials"),
        (_one_trial_study, "at least 2 complete trials"),
        (_constant_parameter_study, "No parameter varies"),
    ],
)
def test_param_importances_explains_an_empty_figure(make_study, reason):
    figure = param_importances(make_study(), title="degenerate")
    assert isinstance(figure, Figure) and figure.axes == []
    assert reason in _message(figure)


def test_param_importances_shows_optuna_errors_and_warnings(study, monkeypatch):
    def zero_variance(study):
        raise RuntimeError("Encountered zero total variance in all trees.")

    monkeypatch.setattr(optuna.importance, "get_param_importances", zero_variance)
    figure = param_importances(study)
    assert figure.axes == [] and "zero total variance" in _message(figure)

    def equal_with_warning(study):
        warnings.warn("Parameter importances will be equal.", UserWarning, stacklevel=2)
        return {name: 1 / 3 for name in PARAMS}

    monkeypatch.setattr(optuna.importance, "get_param_importances", equal_with_warning)
    figure = param_importances(study)
    assert "Parameter importances will be equal." in figure.axes[0].get_title()


def test_params_vs_objective_has_one_panel_per_parameter(study):
    figure = params_vs_objective(study, title="jaco search")
    panels = _panels(figure)
    assert len(figure.axes) == 3 and set(panels) == set(PARAMS)
    assert "(mm)" in figure.get_supylabel() and "jaco search" in figure.get_suptitle()
    assert panels["learning_rate"].get_xscale() == "log" and panels["depth"].get_xscale() == "linear"
    assert all(ax.get_yscale() == "log" for ax in figure.axes)
    ticks = [label.get_text() for label in panels["activation"].get_xticklabels()]
    assert ticks == list(ACTIVATION_PENALTY_MM)

    best = study.best_trial
    for name in ("learning_rate", "depth"):
        (star,) = _by_gid(panels[name], "best")
        assert tuple(star.get_offsets()[0]) == pytest.approx((best.params[name], best.value))
        assert len(_by_gid(panels[name], "trials")[0].get_offsets()) == len(
            study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        )
    (star,) = _by_gid(panels["activation"], "best")
    category = list(ACTIVATION_PENALTY_MM).index(best.params["activation"])
    assert abs(star.get_offsets()[0][0] - category) < 0.5


def test_params_vs_objective_wraps_after_four_columns():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda trial: sum(trial.suggest_float(f"x{i}", 1.0, 2.0) for i in range(6)), n_trials=5)
    figure = params_vs_objective(study)
    assert len(figure.axes) == 6
    assert figure.axes[0].get_subplotspec().get_gridspec().ncols == 4


def test_edge_warnings_flag_a_best_value_at_the_boundary(edge_study):
    assert edge_study.best_params["learning_rate"] < 10**-3.7  # the setup: best in the lowest tenth
    assert edge_warnings(edge_study) == ["learning_rate"]
    panels = _panels(params_vs_objective(edge_study))
    assert EDGE_WARNING in panels["learning_rate"].get_title()
    assert all(EDGE_WARNING not in panels[name].get_title() for name in ("depth", "activation"))


def test_edge_warnings_stay_quiet_when_the_best_is_in_the_middle(study):
    assert edge_warnings(study) == []
    assert all(EDGE_WARNING not in ax.get_title() for ax in params_vs_objective(study).axes)


def _study_with_best(params, distributions):
    """One good trial at params and a worse one at the centre of every range."""
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=1.0))
    centre = {"learning_rate": 10**-2.5, "depth": 3}
    study.add_trial(optuna.trial.create_trial(params=centre, distributions=distributions, value=2.0))
    return study


@pytest.mark.parametrize(
    "learning_rate, depth, flagged",
    [
        (1e-3, 3, []),  # 0.9 % of the linear range, but a third of the way in log space
        (1.9e-4, 3, ["learning_rate"]),  # log position 0.09
        (1e-4, 5, ["learning_rate", "depth"]),
        (0.09, 1, ["learning_rate", "depth"]),
    ],
)
def test_edge_warnings_measure_log_ranges_in_log_space(learning_rate, depth, flagged):
    distributions = {"learning_rate": FloatDistribution(1e-4, 1e-1, log=True), "depth": IntDistribution(1, 5)}
    study = _study_with_best({"learning_rate": learning_rate, "depth": depth}, distributions)
    assert edge_warnings(study) == flagged


def test_edge_warnings_ignore_categorical_and_studies_without_a_result():
    study = optuna.create_study()
    assert edge_warnings(study) == []
    study.add_trial(
        optuna.trial.create_trial(
            params={"activation": "relu"},
            distributions={"activation": CategoricalDistribution(["relu", "tanh"])},
            value=1.0,
        )
    )
    assert edge_warnings(study) == []


def test_trials_table_has_one_row_per_trial_with_state(study):
    table = trials_table(study)
    assert len(table) == len(study.trials)
    assert list(table["number"]) == sorted(t.number for t in study.trials)
    assert set(table["state"]) == {"COMPLETE", "PRUNED", "FAIL", "RUNNING"}
    assert "user_attrs_rotation_error_deg" in table.columns
    assert {f"params_{name}" for name in PARAMS} <= set(table.columns)


def test_trials_table_of_an_empty_study_is_empty_with_a_state_column():
    table = trials_table(optuna.create_study())
    assert len(table) == 0 and "state" in table.columns


def _only_failed_and_pruned_study():
    study = optuna.create_study()
    study.optimize(lambda trial: 1 / 0, n_trials=2, catch=(ZeroDivisionError,))
    for _ in range(2):
        trial = study.ask({"learning_rate": FloatDistribution(1e-4, 1e-1, log=True)})
        trial.report(7.5, step=0)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return study


FIGURES = [optimization_history, param_importances, params_vs_objective]
STUDIES = {
    "empty": optuna.create_study,
    "one_trial": _one_trial_study,
    "failed_and_pruned": _only_failed_and_pruned_study,
}


@pytest.mark.parametrize("make_figure", FIGURES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("study_name", list(STUDIES))
def test_figures_never_raise_on_degenerate_studies_and_render(make_figure, study_name):
    figure = make_figure(STUDIES[study_name](), title=study_name)
    assert isinstance(figure, Figure)
    figure.savefig(io.BytesIO(), format="png")


def test_pruned_only_study_still_shows_the_pruned_trials_in_the_history():
    (pruned,) = _by_gid(optimization_history(_only_failed_and_pruned_study()).axes[0], "pruned")
    assert [tuple(point) for point in pruned.get_offsets()] == [(2, 7.5), (3, 7.5)]


@pytest.mark.parametrize("make_figure", FIGURES, ids=lambda f: f.__name__)
def test_figures_render_to_png(make_figure, study, edge_study):
    for source in (study, edge_study):
        buffer = io.BytesIO()
        make_figure(source, title="render").savefig(buffer, format="png")
        assert buffer.getvalue().startswith(b"\x89PNG")


def test_multi_objective_studies_are_rejected_with_a_message():
    study = optuna.create_study(directions=["minimize", "minimize"])
    with pytest.raises(ValueError, match="single-objective"):
        optimization_history(study)
