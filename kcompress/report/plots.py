"""Plots written into model and sweep directories (matplotlib, no display needed)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


METRIC_LABELS = {"test_error": "test error (%)", "max_error": "ε = max |error| (positions)"}


def save_figure(fig, path):
    """Lay out ``fig``, write it to ``path`` as PNG and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def training_curves(history, path, title="training", markers=()):
    """Loss and the task metric per epoch, train and validation; ``markers`` are
    ``(epoch, label)`` pairs drawn as vertical lines (e.g. α changes, μ steps)."""
    metric = next((m for m in ("error", "max_error", "mae") if m in history), None)
    panels = [("loss", "loss")] + ([(metric, metric)] if metric else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        epochs = np.arange(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], label=f"train {label}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label=f"validation {label}")
        for epoch, text in markers:
            ax.axvline(epoch, color="grey", lw=0.6, ls=":")
        if markers and len(markers) <= 12:
            for epoch, text in markers:
                ax.text(epoch, ax.get_ylim()[1], str(text), fontsize=6, rotation=90, va="top")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if key == "loss" and min(history[key]) > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path)


def confusion_matrix(y_true, y_pred, num_classes, path, title="confusion matrix (test)"):
    """Counts of true class (rows) vs predicted class (columns)."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    im = ax.imshow(cm, cmap="Blues")
    for i in range(num_classes):
        for j in range(num_classes):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(num_classes))
    ax.set_yticks(range(num_classes))
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    save_figure(fig, path)
    return cm


def error_vs_ratio(points, reference_error, path, metric_label, title="error vs compression ratio"):
    """One point per compressed model: ``(ratio, error, label)``; the reference as a line."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ratios = [p[0] for p in points]
    errors = [p[1] for p in points]
    ax.plot(ratios, errors, "o-", label="compressed")
    for r, e, text in points:
        ax.annotate(str(text), (r, e), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(reference_error, color="k", ls="--", lw=1, label="reference")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g×"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("compression ratio (reference bits / compressed bits)")
    ax.set_ylabel(METRIC_LABELS.get(metric_label, metric_label))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title(title)
    save_figure(fig, path)


def pareto_front(points, front, budget, reference, path, objective_label, error_label):
    """Every trial as a point ``(objective, error, over_budget)``, the non-dominated ``front``
    as a step line, the error budget as a band (errors up to ``budget``), the reference as a star."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ok = [(x, y) for x, y, over in points if not over]
    over = [(x, y) for x, y, o in points if o]
    ax.axhspan(min([y for _, y, _ in points] + [reference[1], budget]), budget, color="tab:green", alpha=0.12,
               label="within budget")
    ax.axhline(budget, color="tab:green", lw=1)
    if ok:
        ax.plot(*zip(*ok), "o", color="tab:blue", ms=5, label="trial")
    if over:
        ax.plot(*zip(*over), "x", color="tab:red", ms=6, label="trial over budget")
    if front:
        ax.step(*zip(*sorted(front)), where="post", color="k", lw=1.2, label="Pareto front")
    ax.plot(*reference, "*", color="tab:orange", ms=12, label="reference")
    ax.set_xscale("log")
    ax.set_xlabel(objective_label)
    ax.set_ylabel(error_label)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("auto search: objective vs validation error")
    save_figure(fig, path)
