"""Figures for training runs (learning curves). Matplotlib object API, Agg, no pyplot state."""

from __future__ import annotations

from matplotlib.figure import Figure


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
    r2_ax.plot(epochs, [h.get("r2_mean", float("nan")) for h in history], marker="o", markersize=3)
    r2_ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
    r2_ax.set(xlabel="epoch", ylabel="mean R² over outputs", title="Probe R² (0 = predicts the mean)",
              ylim=(min(-0.05, *[h.get("r2_mean", 0.0) for h in history]), 1.02))
    lr_ax.plot(epochs, [h.get("learning_rate", float("nan")) for h in history], marker="o", markersize=3)
    lr_ax.set(yscale="log", xlabel="epoch", ylabel="learning rate", title="Learning rate at epoch end")
    for ax in (loss_ax, r2_ax, lr_ax):
        ax.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return figure
