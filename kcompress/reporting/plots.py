"""Plots written into model and sweep directories (matplotlib, no display needed)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.cm  # noqa: E402
import matplotlib.colors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path):
    """Lay out ``fig``, write it to ``path`` as PNG and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def training_curves(history, path, title="training", markers=(), color_by=None):
    """Loss and the task metric per epoch, train and validation; ``markers`` are
    ``(epoch, label)`` pairs drawn as vertical lines (e.g. α changes, μ steps).

    A ``label_<metric>`` entry (the metric on the true labels while training on teacher
    targets) gets a panel of its own. ``color_by`` names a per-epoch history entry (``alpha``)
    whose every value gets one colour of a colormap for all curves: 58 α steps drawn in two
    colours could not be told apart.
    """
    metric = next((m for m in ("error", "max_error", "mae") if m in history), None)
    label_metric = next((m for m in ("label_error", "label_max_error") if m in history), None)
    panels = [("loss", "loss")] + ([(metric, metric)] if metric else []) + (
        [(label_metric, label_metric.replace("_", " ", 1))] if label_metric else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        epochs = np.arange(1, len(history[key]) + 1)
        if color_by:
            _segmented(ax, epochs, history, key, history[color_by], color_by)
        else:
            ax.plot(epochs, history[key], label=f"train {label}")
        if f"val_{key}" in history and not color_by:
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


def step_curves(rows, path, title="training"):
    """Each quantity of ``rows`` (:mod:`kcompress.training.curves`) per optimizer step, train and validation."""
    keys = [k for k in dict.fromkeys(k for row in rows for k in row) if k not in ("step", "epoch")
            and not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 3.8), squeeze=False)
    steps = [row["step"] for row in rows]
    for ax, key in zip(axes[0], keys):
        for name, label in ((key, "train"), (f"val_{key}", "validation")):
            if any(name in row for row in rows):
                ax.plot(steps, [row.get(name, np.nan) for row in rows], label=f"{label} {key}")
        if key == "loss" and min(row[key] for row in rows) > 0:
            ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path)


def _segmented(ax, epochs, history, key, values, name):
    """``history[key]`` (solid) and ``history["val_" + key]`` (dashed) split into runs of equal
    ``values``, each run in the colour of its value on a viridis scale, with a colorbar."""
    values = np.asarray(values, dtype=float)
    norm = matplotlib.colors.Normalize(values.min(), values.max() if values.max() > values.min() else values.min() + 1)
    cmap = plt.get_cmap("viridis")
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    for a, b in zip(starts, np.r_[starts[1:], len(values)]):
        stop = min(b + 1, len(values))  # overlap one point so that the segments join
        for series, style in ((key, "-"), (f"val_{key}", "--")):
            if series in history:
                ax.plot(epochs[a:stop], history[series][a:stop], style, color=cmap(norm(values[a])), lw=1.2)
    ax.plot([], [], "k-", label="train")
    if f"val_{key}" in history:
        ax.plot([], [], "k--", label="validation")
    ax.figure.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=name)


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
