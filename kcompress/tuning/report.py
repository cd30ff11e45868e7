"""What a search leaves in its tuning directory, besides Keras Tuner's own state.

- ``trials.md`` / ``trials.csv``: every trial's settings and metrics, sorted by the objective
  (failed trials last);
- ``grid.md`` (grid searches): the objective as tables over the last two searched settings,
  one table per combination of the others (e.g. ε for each loss: learning rate × batch size);
- ``best.yaml`` (usable as ``--config``) and ``best_command.txt``: the best settings as a
  ready ``train`` (or ``compress``) command; ``best/``: the best trial's model directory;
- ``objective.png``: the objective of each trial in run order, with the best so far;
  ``heatmap_A_B.png`` (grid searches): the best objective for each pair of searched settings.
"""
import math
import shlex
import shutil
from pathlib import Path

import numpy as np
import yaml

from kcompress.core.objectives import primary_metric
from kcompress.core.record import RunRecord
from kcompress.reporting import plots
from kcompress.reporting.tables import cell, table, write_table
from kcompress.tuning.space import searched, trial_value
from kcompress.tuning.trials import MODEL_DIR

plt = plots.plt
BEST_DIR = "best"


def write_report(out, rows, space, runner, objective, search):
    """Write every report file into ``out``; return ``{"best": row or None, "trials": rows}``."""
    out = Path(out)
    names = searched(space) or list(space)
    rows = [{**r, "values": {k: v for k, v in r["values"].items() if not k.startswith("tuner/")}} for r in rows]
    ranked = sorted(rows, key=lambda r: (not _ok(r), r["score"] if _ok(r) else 0.0, r["trial"]))
    columns = _metric_columns(ranked, objective, runner.task)
    write_table(out / "trials", _flat(ranked), _columns(ranked, list(space), columns, everything=True))
    if search == "grid" and len(names) >= 2:
        (out / "grid.md").write_text(_grid_tables(rows, names, objective))
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                _heatmap(rows, a, b, space, objective, out / f"heatmap_{a}_{b}.png")
    _objective_plot(rows, objective, out / "objective.png")
    best = ranked[0] if ranked and _ok(ranked[0]) else None
    if best:
        _write_best(out, best, runner)
    _print_summary(out, ranked, names, columns, best)
    return {"best": best, "trials": ranked}


def _ok(row):
    return row["status"] == "COMPLETED" and row["score"] is not None and math.isfinite(row["score"])


def _metric_columns(rows, objective, task):
    """The objective first, then the headline metric, validation loss, ratio and time when present."""
    wanted = [objective, primary_metric(task) if task == "classification" else "max_error", "mae", "val_loss",
              "bits_ratio", "seconds"]
    present = {k for r in rows for k in r["metrics"]}
    return [c for i, c in enumerate(wanted) if c in present and c not in wanted[:i]]


def _flat(rows):
    """A trial row as one flat table row: trial, status, values, metrics."""
    return [{"trial": r["trial"], "status": r["status"].lower(), **r["values"], **r["metrics"]} for r in rows]


def _columns(rows, names, columns, everything=False):
    extra = sorted({k for r in rows for k in r["metrics"]} - set(columns)) if everything else []
    return ["trial", "status", *names, *columns, *extra]


def _grid_tables(rows, names, objective):
    """The objective over the last two settings, one table per combination of the others."""
    *outer, row_name, col_name = names
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r["values"].get(n) for n in outer), []).append(r)
    row_vals = _ordered(rows, row_name)
    col_vals = _ordered(rows, col_name)
    parts = [f"# {objective} over the grid (- = failed or not run)\n"]
    for key, members in groups.items():
        title = ", ".join(f"{n}={cell(v)}" for n, v in zip(outer, key)) or "all trials"
        got = {(r["values"].get(row_name), r["values"].get(col_name)): r for r in members}
        score = lambda r: r["score"] if r and _ok(r) else "-"  # noqa: E731
        cells = [{row_name: cell(rv), **{i: score(got.get((rv, cv))) for i, cv in enumerate(col_vals)}}
                 for rv in row_vals]
        columns = [(row_name, f"{row_name} \\ {col_name}")] + [(i, cell(cv)) for i, cv in enumerate(col_vals)]
        parts.append(f"## {title}\n\n" + table(cells, columns)[0])
    return "\n".join(parts)


def _ordered(rows, name):
    """The values of ``name`` in the order trials first used them."""
    seen = []
    for r in rows:
        v = r["values"].get(name)
        if v not in seen:
            seen.append(v)
    return seen


def _heatmap(rows, a, b, space, objective, path):
    """The best objective (over the other settings) for each (a, b) pair, annotated."""
    av, bv = _ordered(rows, a), _ordered(rows, b)
    grid = np.full((len(av), len(bv)), np.nan)
    for r in rows:
        if _ok(r):
            i, j = av.index(r["values"].get(a)), bv.index(r["values"].get(b))
            grid[i, j] = np.fmin(grid[i, j], r["score"])
    fig, ax = plt.subplots(figsize=(1.2 * len(bv) + 2.5, 0.6 * len(av) + 2))
    shown = np.log10(grid) if np.nanmin(grid, initial=np.inf) > 0 else grid
    im = ax.imshow(np.ma.masked_invalid(shown), cmap="viridis_r", aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, "failed" if np.isnan(v) else f"{v:.3g}", ha="center", va="center", fontsize=8,
                color="red" if np.isnan(v) else "black", bbox=dict(facecolor="white", alpha=0.6, lw=0))
    ax.set_xticks(range(len(bv)), [cell(v) for v in bv])
    ax.set_yticks(range(len(av)), [cell(v) for v in av])
    ax.set_xlabel(b)
    ax.set_ylabel(a)
    others = [n for n in space if n not in (a, b) and len(_ordered(rows, n)) > 1]
    ax.set_title(f"{objective}" + (f" (best over {', '.join(others)})" if others else ""), fontsize=9)
    fig.colorbar(im, ax=ax, label=f"log10 {objective}" if shown is not grid else objective)
    plots.save_figure(fig, path)


def _objective_plot(rows, objective, path):
    """The objective per trial in run order, failed trials marked, and the best so far."""
    order = sorted(rows, key=lambda r: r["trial"])
    scores = np.array([r["score"] if _ok(r) else np.nan for r in order], dtype=float)
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(max(5.5, 0.18 * len(order) + 3), 3.8))
    ax.plot(x, scores, "o", ms=4, label="trial")
    if np.isfinite(scores).any():
        ax.step(x, np.fmin.accumulate(np.where(np.isnan(scores), np.inf, scores)), where="post", label="best so far")
        failed = np.isnan(scores)
        if failed.any():
            ax.plot(x[failed], np.full(failed.sum(), np.nanmax(scores)), "x", color="red", label="failed")
        if np.nanmin(scores) > 0 and np.nanmax(scores) / np.nanmin(scores) > 20:
            ax.set_yscale("log")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.grid(alpha=0.3)
    ax.legend()
    plots.save_figure(fig, path)


def _write_best(out, best, runner):
    """``best.yaml``, ``best_command.txt`` and ``best/`` (the best trial's model directory)."""
    values = {k: trial_value(v) for k, v in best["values"].items()}
    (out / "best.yaml").write_text(yaml.safe_dump(runner.config(values), sort_keys=False))
    command = runner.command(values, f"models/{out.name}-best")
    commands = command if isinstance(command[0], list) else [command]  # a chain: one command per stage
    (out / "best_command.txt").write_text(" &&\n".join(map(shlex.join, commands)) + "\n")
    source = out / f"trial_{best['trial']}" / MODEL_DIR
    if not source.is_dir():
        return
    staged = out / f".{BEST_DIR}.partial"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(source, staged)
    history = RunRecord.read(staged).curves
    if history.get("loss") and not (staged / "training.png").exists():
        plots.training_curves(history, staged / "training.png", title=f"best trial {best['trial']}")
    shutil.rmtree(out / BEST_DIR, ignore_errors=True)
    staged.rename(out / BEST_DIR)


def _print_summary(out, ranked, names, columns, best):
    done = sum(_ok(r) for r in ranked)
    print(f"\n{len(ranked)} trials ({done} completed, {len(ranked) - done} failed) in {out}")
    print(table(_flat(ranked[:10]), _columns(ranked, names, columns))[0], end="")
    if best:
        print(f"best: trial {best['trial']} -> {out / BEST_DIR}\n{(out / 'best_command.txt').read_text()}", end="")
