"""Four classic "my network does not learn" questions, each run broken and fixed, diagnosed by iklab.

A case file (``experiments/cases/*.yaml``) holds the question's setup as the
``broken`` experiment, ``fixed`` as dotted overrides of it (the fix is the
diff), the flags the diagnosis must raise, and the metric that shows the fix
works. ``problem: ik`` runs both through `iklab.learning.training` (an IK experiment);
the other problems (`iklab.studies.toy_problems`) go through the same diagnostics
callback, flags, per-epoch MLflow logging and diagnosis report.

MLflow: experiment ``diagnosis-cases``; one run for the whole set (the
``mlflow run`` run if there is one) holding the summary, one child run per
case holding the comparison (table and figure), and under it one run each for
``broken`` and ``fixed``.

Its command line is `iklab.cases`:

    python -m iklab.cases [--cases box_center,...] [--quick true]
    mlflow run . -e cases --env-manager local --experiment-name diagnosis-cases
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import keras
import mlflow
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from iklab.learning import run_logging as logging_
from iklab.learning.config import (
    ConfigError,
    DiagnosticsConfig,
    OptimizerConfig,
    apply_overrides,
    build_dataclass,
    experiment_from_dict,
    read_yaml,
)
from iklab.learning.diagnostics import DiagnosticsCallback, diagnosis_markdown, evaluate_flags
from iklab.learning.metric_names import R2_MEAN, SOLUTION_COVERAGE
from iklab.learning.models import build_optimizer, count_parameters
from iklab.learning.training import TrainResult, mark_diverged, train
from iklab.studies.toy_problems import PROBLEMS

T = TypeVar("T")

EXPERIMENT = "diagnosis-cases"
VARIANTS = ("broken", "fixed")


@dataclass(frozen=True)
class ToyTraining:
    epochs: int = 10
    batch_size: int = 32
    loss: str = "mse"  # mse | rmse (the square root of the batch MSE, as in questions/002)


@dataclass(frozen=True)
class ToyExperiment:
    """A non-IK experiment: ``data`` and ``model`` are the keyword arguments of its problem's functions."""

    name: str
    problem: str
    seed: int = 0
    data: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: ToyTraining = field(default_factory=ToyTraining)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


@dataclass(frozen=True)
class Metric:
    """The number that shows whether a variant learned; ``goal`` says which way is better."""

    key: str
    label: str
    goal: str  # "min" or "max"
    baseline: str | None = None  # a metric key to draw beside it (e.g. predicting the mean)
    baseline_label: str = "baseline"


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    question: str
    symptom: str
    fix: str
    problem: str
    expected_flags: tuple[str, ...]
    metric: Metric
    broken: dict
    fixed: dict  # dotted overrides of broken
    quick: dict = field(default_factory=dict)  # dotted overrides of every variant, for seconds-long runs
    # Other fixes, run beside `fixed`: name -> {fix: text, overrides: dotted overrides of broken,
    # quick: dotted overrides after the case's own quick ones}
    more_fixes: dict = field(default_factory=dict)
    source: str = ""

    @property
    def variants(self) -> tuple[str, ...]:
        return (*VARIANTS, *self.more_fixes)

    @property
    def fixes(self) -> tuple[str, ...]:
        return self.variants[1:]

    def experiment(self, variant: str, quick: bool = False) -> ToyExperiment:
        """A variant's experiment config (IK: ExperimentConfig; else ToyExperiment)."""
        if variant not in self.variants:
            raise ValueError(f"variant must be one of {', '.join(self.variants)}, got {variant!r}")
        raw = {**self.broken, "name": f"{self.name}-{variant}"}
        more = self.more_fixes.get(variant, {})
        if variant == "fixed":
            raw = apply_overrides(raw, self.fixed, self.source)
        elif more:
            raw = apply_overrides(raw, more.get("overrides", {}), self.source)
        if quick:
            raw = apply_overrides(raw, {**self.quick, **more.get("quick", {})}, self.source)
        if self.problem == "ik":
            return experiment_from_dict(raw, self.source)
        return build_dataclass(ToyExperiment, {**raw, "problem": self.problem}, self.source)


@dataclass
class CaseResult:
    case: Case
    run_id: str
    variants: dict[str, TrainResult]

    @property
    def diagnosed(self) -> bool:
        """The broken run raised every expected flag; the fixed run raised none. (The other fixes'
        flags are reported beside it: a quick run may be too short for them to learn.)"""
        return set(self.case.expected_flags) <= set(self.variants["broken"].flags) and not self.variants["fixed"].flags


def load_case(path: str | Path) -> Case:
    path = Path(path)
    case = build_dataclass(Case, {**read_yaml(path), "source": str(path)}, str(path))
    if case.problem != "ik" and case.problem not in PROBLEMS:
        raise ConfigError(f"{path}: problem must be ik or one of {', '.join(PROBLEMS)}, got {case.problem!r}")
    if case.metric.goal not in ("min", "max"):
        raise ConfigError(f"{path}: metric.goal must be min or max, got {case.metric.goal!r}")
    for name, more in case.more_fixes.items():
        if name in VARIANTS or not isinstance(more, dict) or set(more) - {"fix", "overrides", "quick"}:
            raise ConfigError(f"{path}: more_fixes.{name} must be a new name with keys fix, overrides, quick")
    for variant in case.variants:
        case.experiment(variant)  # every mistake in the file surfaces now, not after a long run
    return case


# --- running one variant ------------------------------------------------------------------


def _rmse(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    return keras.ops.sqrt(keras.ops.mean(keras.ops.square(y_pred - y_true)))


_LOSSES = {"mse": "mse", "rmse": _rmse}


def train_toy(
    config: ToyExperiment, *, parent_run_id: str | None = None, run_name: str | None = None, tags: dict | None = None
) -> TrainResult:
    """Train one toy experiment with iklab's diagnostics and MLflow logging; flags in the result."""
    problem = PROBLEMS[config.problem]
    if config.training.loss not in _LOSSES:
        raise ValueError(f"training.loss must be mse or rmse, got {config.training.loss!r}")
    arrays = _call(problem.make_data, "data", seed=config.seed, **config.data)
    keras.utils.set_random_seed(config.seed)
    model = _call(problem.build_model, "model", arrays, **config.model)
    epochs, batch = config.training.epochs, config.training.batch_size
    steps = math.ceil(len(arrays.x_train) / batch)
    loss = _LOSSES[config.training.loss]
    model.compile(optimizer=build_optimizer(config.optimizer, steps, epochs), loss=loss)
    probe = slice(0, config.diagnostics.probe_rows)
    diagnostics = DiagnosticsCallback(
        arrays.x_val[probe],
        arrays.y_val[probe],
        loss_fn=loss,
        grad_batch=(arrays.x_train[:batch], arrays.y_train[:batch]),
    )
    with logging_.training_run(run_name or config.name, EXPERIMENT, parent_run_id=parent_run_id, tags=tags) as run:
        logging_.log_config(config, count_parameters(model), len(arrays.x_train))
        mlflow.set_tag("problem", config.problem)
        epoch_logger = logging_.EpochLogger(run.info.run_id, epochs)
        started = time.perf_counter()
        model.fit(
            arrays.x_train,
            arrays.y_train,
            validation_data=(arrays.x_val, arrays.y_val),
            epochs=epochs,
            batch_size=batch,
            shuffle=True,
            verbose=0,
            callbacks=[diagnostics, epoch_logger, keras.callbacks.TerminateOnNaN()],
        )
        result = TrainResult(
            "finished",
            run.info.run_id,
            history=epoch_logger.history,
            model=model,
            train_seconds=time.perf_counter() - started,
        )
        flags = evaluate_flags(diagnostics.history, warmup_epochs=config.diagnostics.warmup_epochs)
        result.flags = [f.name for f in flags]
        if mark_diverged(result):
            logging_.log_failure(result.reason, flags, diagnostics.history)
            return result
        result.metrics = {**problem.evaluate(model, arrays), "train_seconds": result.train_seconds}
        logging_.log_results(
            config,
            result.metrics,
            result.history,
            flags,
            diagnostics.history,
            diagnosis_markdown(flags, diagnostics.history, title=f"Diagnosis: {config.name}"),
        )
    return result


def _call(function: Callable[..., T], section: str, *args: object, **kwargs: object) -> T:
    """A problem's function with the config's keywords; an unknown keyword is the user's mistake."""
    try:
        inspect.signature(function).bind(*args, **kwargs)
    except TypeError as exc:  # only the binding: a TypeError inside the function is a bug, not config
        raise ConfigError(f"{section}: {exc} (keywords of {function.__name__})") from None
    return function(*args, **kwargs)


def run_variant(case: Case, variant: str, *, parent_run_id: str, quick: bool = False) -> TrainResult:
    config = case.experiment(variant, quick)
    tags = {"case": case.name, "variant": variant}
    print(f"[{case.name}] {variant}", flush=True)
    if case.problem == "ik":
        return train(config, parent_run_id=parent_run_id, run_name=variant, tags=tags, log_model=False)
    return train_toy(config, parent_run_id=parent_run_id, run_name=variant, tags=tags)


# --- a case, and all of them --------------------------------------------------------------


def run_case(case: Case, *, parent_run_id: str | None = None, quick: bool = False) -> CaseResult:
    """Broken and fixed under one case run, then the comparison table and figure on that run."""
    with logging_.training_run(case.title, EXPERIMENT, parent_run_id=parent_run_id) as run:
        mlflow.set_tags(
            {
                "case": case.name,
                "role": "case",
                "question": case.question,
                "expected_flags": ",".join(case.expected_flags),
            }
        )
        mlflow.log_params({"case.file": case.source, "case.quick": quick, "case.problem": case.problem})
        variants = {v: run_variant(case, v, parent_run_id=run.info.run_id, quick=quick) for v in case.variants}
        result = CaseResult(case, run.info.run_id, variants)
        _log_comparison(result)
    return result


def _log_comparison(result: CaseResult) -> None:
    case, broken, fixed = result.case, result.variants["broken"], result.variants["fixed"]
    metrics = {}
    for variant, run in result.variants.items():
        metrics[f"{variant}/{case.metric.key}"] = run.metrics.get(case.metric.key, math.nan)
        metrics[f"{variant}/flag_count"] = len(run.flags)
        metrics[f"{variant}/final_r2_mean"] = _last(run.history, R2_MEAN)
    metrics["diagnosed"] = float(result.diagnosed)
    mlflow.log_metrics(metrics)
    mlflow.set_tags(
        {
            "broken_flags": ",".join(broken.flags) or "none",
            "fixed_flags": ",".join(fixed.flags) or "none",
            **{f"{fix}_flags": ",".join(result.variants[fix].flags) or "none" for fix in case.more_fixes},
            "verdict": "diagnosed" if result.diagnosed else "NOT diagnosed",
        }
    )
    mlflow.log_text(comparison_markdown(result), "comparison.md")
    mlflow.log_figure(comparison_figure(result), "comparison.png")


def _last(history: list[dict], key: str) -> float:
    return float(history[-1].get(key, math.nan)) if history else math.nan


def comparison_markdown(result: CaseResult) -> str:
    case, m = result.case, result.case.metric
    lines = [
        f"# {case.title}",
        "",
        f"Question: `questions/{case.question}`",
        "",
        f"**Symptom.** {case.symptom}",
        "",
        f"**Fix.** {case.fix}",
        "",
        *[f"**Fix ({name}).** {more.get('fix', '')}\n" for name, more in case.more_fixes.items()],
        f"Expected flags on the broken run: {', '.join(case.expected_flags)}.",
        "",
        f"| run | flags | {m.label} | "
        + (f"{m.baseline_label} | " if m.baseline else "")
        + "final probe R^2 | final loss | final val_loss | epochs | seconds |",
        "| --- | --- | ---: | " + ("---: | " if m.baseline else "") + "---: | ---: | ---: | ---: | ---: |",
    ]
    for variant, run in result.variants.items():
        baseline = f"{run.metrics.get(m.baseline, math.nan):.4g} | " if m.baseline else ""
        lines.append(
            f"| {variant} | {', '.join(run.flags) or 'none'} | {run.metrics.get(m.key, math.nan):.4g} | "
            f"{baseline}{_last(run.history, 'r2_mean'):.3f} | {_last(run.history, 'loss'):.4g} | "
            f"{_last(run.history, 'val_loss'):.4g} | {len(run.history)} | {run.train_seconds:.1f} |"
        )
    coverage = [(v, r.metrics[SOLUTION_COVERAGE]) for v, r in result.variants.items() if SOLUTION_COVERAGE in r.metrics]
    if coverage:  # a fix that learns every IK branch: the share of them it finds
        lines += [
            "",
            *[f"Solution coverage of {v}: {c:.1%} of the multi-start reference's solutions." for v, c in coverage],
        ]
    verdict = (
        "diagnosed: the broken run raised every expected flag and the fixed run none"
        if result.diagnosed
        else "NOT diagnosed: the flags differ from the expected ones (see each run's diagnosis.md)"
    )
    return "\n".join(lines + ["", f"**Verdict:** {verdict}."]) + "\n"


def comparison_figure(result: CaseResult) -> Figure:
    """Validation loss and probe R^2 per epoch, broken against fixed, and the case's metric."""
    case = result.case
    figure = Figure(figsize=(14, 4), layout="constrained")
    loss_ax, r2_ax, bar_ax = figure.subplots(1, 3)
    colours = {"broken": "tab:red", "fixed": "tab:green"}
    colours.update({name: "tab:blue" for name in case.more_fixes})
    for variant, run in result.variants.items():
        epochs = [h["epoch"] + 1 for h in run.history]
        label = f"{variant} ({', '.join(run.flags) or 'no flags'})"
        loss_ax.plot(
            epochs,
            [h.get("val_loss", np.nan) for h in run.history],
            marker="o",
            markersize=3,
            color=colours[variant],
            label=label,
        )
        r2_ax.plot(
            epochs,
            [h.get(R2_MEAN, np.nan) for h in run.history],
            marker="o",
            markersize=3,
            color=colours[variant],
            label=variant,
        )
    loss_ax.set(yscale="log", xlabel="epoch", ylabel="validation loss", title="Validation loss")
    loss_ax.legend(fontsize=8)
    r2_ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
    r2_ax.set(
        xlabel="epoch",
        ylabel="mean R² of the probe",
        title="R² (0 = predicts the mean)",
        ylim=(
            max(
                -5.0,
                min(
                    -0.05,
                    *[
                        h.get(R2_MEAN, 0.0)
                        for r in result.variants.values()
                        for h in r.history
                        if np.isfinite(h.get(R2_MEAN, 0.0))
                    ],
                )
                - 0.1,
            ),
            1.05,
        ),
    )
    r2_ax.legend(fontsize=8)
    names, values, bar_colours = [], [], []
    for variant, run in result.variants.items():
        names.append(variant)
        values.append(run.metrics.get(case.metric.key, np.nan))
        bar_colours.append(colours[variant])
    if case.metric.baseline:
        names.append(case.metric.baseline_label)
        values.append(result.variants["fixed"].metrics.get(case.metric.baseline, np.nan))
        bar_colours.append("tab:grey")
    bars = bar_ax.bar(names, values, color=bar_colours)
    bar_ax.bar_label(bars, fmt="%.3g")
    bar_ax.set(title=case.metric.label, ylabel=case.metric.label)
    for ax in (loss_ax, r2_ax, bar_ax):
        ax.grid(alpha=0.3)
    figure.suptitle(case.title)
    return figure


def summary_markdown(results: list[CaseResult]) -> str:
    lines = [
        "# Diagnosis cases",
        "",
        "| case | broken: flags | fixed: flags | metric | broken | fixed | verdict |",
        "| --- | --- | --- | --- | ---: | ---: | --- |",
    ]
    for r in results:
        b, m = r.variants["broken"], r.case.metric
        f = r.variants["fixed"]
        fixes = "; ".join(f"{fix}: {', '.join(r.variants[fix].flags) or 'none'}" for fix in r.case.fixes)
        lines.append(
            f"| {r.case.title} | {', '.join(b.flags) or 'none'} | {fixes} | "
            f"{m.label} | {b.metrics.get(m.key, math.nan):.4g} | {f.metrics.get(m.key, math.nan):.4g} | "
            f"{'diagnosed' if r.diagnosed else 'NOT diagnosed'} |"
        )
    return "\n".join(lines) + "\n"


def run_cases(cases: list[Case], *, quick: bool = False) -> list[CaseResult]:
    """All ``cases`` under one run (`mlflow run`'s own if there is one) with the summary table."""
    results = []
    with logging_.training_run(EXPERIMENT, EXPERIMENT) as run:
        mlflow.set_tags({"role": "cases", "cases": ",".join(c.name for c in cases)})
        started = time.perf_counter()
        for case in cases:
            results.append(run_case(case, parent_run_id=run.info.run_id, quick=quick))
        mlflow.log_metrics(
            {
                "cases_diagnosed": sum(r.diagnosed for r in results),
                "cases_run": len(results),
                "wall_seconds": time.perf_counter() - started,
            }
        )
        mlflow.log_text(summary_markdown(results), "summary.md")
    return results
