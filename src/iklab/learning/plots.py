"""Figures for training runs: learning curves, task-space error histograms.

Matplotlib object API on an Agg canvas: no pyplot, nothing left in global state.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from iklab.learning.metric_names import ELAPSED_SECONDS, PROBE_POSITION_MM, R2_MEAN
from iklab.learning.task_errors import ErrorReport, percentiles_inf


def learning_curves(history: list[dict], title: str = "") -> Figure:
    """Loss and val_loss (log scale), mean R^2 of the probe, learning rate, per epoch."""
    epochs = [h["epoch"] + 1 for h in history]
    figure = Figure(figsize=(13, 3.8), layout="constrained")
    loss_ax, r2_ax, lr_ax = figure.subplots(1, 3)
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        values = [h.get(key, float("nan")) for h in history]
        loss_ax.plot(epochs, values, marker="o", markersize=3, label=label)
    loss_ax.set(yscale="log", xlabel="epoch", ylabel="loss", title="Loss")
    loss_ax.legend()
    r2_ax.plot(epochs, [h.get(R2_MEAN, float("nan")) for h in history], marker="o", markersize=3)
    r2_ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
    r2_ax.set(
        xlabel="epoch",
        ylabel="mean R² over outputs",
        title="Probe R² (0 = predicts the mean)",
        ylim=(min(-0.05, *[h.get(R2_MEAN, 0.0) for h in history]), 1.02),
    )
    rates = [h.get("learning_rate", float("nan")) for h in history]
    lr_ax.plot(epochs, rates, marker="o", markersize=3)
    # log scale unless a schedule reached 0 (cosine's last epoch), which a log axis cannot show
    positive = all(rate > 0 for rate in rates if rate == rate)
    lr_ax.set(
        yscale="log" if positive else "linear",
        xlabel="epoch",
        ylabel="learning rate",
        title="Learning rate at epoch end",
    )
    for ax in (loss_ax, r2_ax, lr_ax):
        ax.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return figure


def error_vs_time(history: list[dict], title: str = "") -> Figure:
    """The probe's median position error (log scale) against training minutes: what more
    compute buys."""
    minutes = [h.get(ELAPSED_SECONDS, float("nan")) / 60 for h in history]
    errors = [h.get(PROBE_POSITION_MM, float("nan")) for h in history]
    figure = Figure(figsize=(6.5, 4), layout="constrained")
    ax = figure.subplots()
    ax.plot(minutes, errors, marker="o", markersize=3)
    ax.set(yscale="log", xlabel="training time (min)", ylabel="median position error (mm)")
    ax.set_title("Validation probe error against training time")
    ax.grid(alpha=0.3, which="both")
    if title:
        figure.suptitle(title)
    return figure


def error_histograms(reports: dict[str, ErrorReport], title: str = "") -> Figure:
    """Overlaid log-binned histograms of position (mm) and rotation (deg) error, one per report.

    Errors span orders of magnitude (0.01 mm for a good model, 1 m for the
    mean baseline), hence log bins and a log axis. Errors below the
    resolution floor (exact answers included) are drawn in the lowest bin and
    counted in the legend; non-finite rows cannot be drawn and are counted too.
    """
    if not reports:
        raise ValueError("error_histograms needs at least one ErrorReport, got an empty dict")
    figure = Figure(figsize=(12.0, 4.5), layout="constrained")
    FigureCanvasAgg(figure)  # Agg canvas without pyplot: nothing left in global state
    axes = figure.subplots(1, 2)
    panels = (
        (axes[0], "position_error_mm", "mm", "Position error", "position error (mm)"),
        (axes[1], "rotation_error_deg", "deg", "Rotation error", "rotation error (deg)"),
    )
    for axis, field, unit, panel_title, label in panels:
        bins = _log_bins([getattr(report, field) for report in reports.values()], _HISTOGRAM_FLOOR[unit])
        for index, (name, report) in enumerate(reports.items()):
            values = getattr(report, field)
            finite = values[np.isfinite(values)]
            notes = [f"median {percentiles_inf(values, (50.0,))[0]:.3g} {unit}"]
            if np.any(finite < bins[0]):
                notes.append(f"{np.count_nonzero(finite < bins[0])} below {bins[0]:.3g}")
            if finite.size < values.size:
                notes.append(f"{values.size - finite.size} non-finite")
            axis.hist(
                np.clip(finite, bins[0], bins[-1]),
                bins=bins,
                histtype="step",
                linewidth=1.6,
                color=f"C{index % 10}",
                label=f"{name} ({', '.join(notes)})",
            )
        axis.set_xscale("log")
        axis.set_title(panel_title)
        axis.set_xlabel(label)
        axis.set_ylabel("rows")
        axis.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    return figure


# Lowest bin edge allowed: 1 micrometre and 0.001 degree are far below what any
# IK network reaches, and without a floor float round-off of exact answers
# (1e-13 mm) would stretch the axis over 16 decades.
_HISTOGRAM_FLOOR = {"mm": 1e-3, "deg": 1e-3}


def _log_bins(arrays: list[np.ndarray], floor: float, n_bins: int = 60) -> np.ndarray:
    """Geometric bin edges from ``max(smallest finite value, floor)`` to the largest."""
    values = np.concatenate([a[np.isfinite(a)] for a in arrays])
    if values.size == 0:  # every row failed: any sensible range will do
        return np.geomspace(floor, floor * 1e6, n_bins + 1)
    low = max(float(values.min()), floor)
    high = max(float(values.max()), low * 10.0)
    return np.geomspace(low, high * (1.0 + 1e-9), n_bins + 1)
