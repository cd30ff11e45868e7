"""The Pareto front of an auto search: objective against validation error.

A trial is on the front when no other trial is at least as good in both (objective and error)
and better in one. ``pareto.md`` / ``pareto.csv`` list the front; ``pareto.png`` shows every
trial, the front as a line, the error budget as a band and the reference.
"""
from kcompress.reporting import plots
from kcompress.reporting.tables import write_table

LABELS = {"bits": "storage bits", "gzip-tflite": "gzip'd float32 TFLite bytes",
          "deployed-size": "smallest deployable file within budget (gzip'd bytes)",
          "latency": "ONNX latency, batch 256, 1 thread (ms)", "params": "parameters"}


def non_dominated(points):
    """Indices of the ``(objective, error)`` points that no other point dominates."""
    return [i for i, (x, y) in enumerate(points)
            if not any(a <= x and b <= y and (a < x or b < y) for a, b in points)]


def completed(rows):
    """The trials that finished with an objective, in trial order."""
    return sorted((r for r in rows if r["status"] == "COMPLETED" and "objective" in (r["metrics"] or {})),
                  key=lambda r: r["trial"])


def _settings_text(values):
    return " ".join(f"{k}={v}" for k, v in values.items() if k != "method")


def write_pareto(out, rows, runner):
    """Write ``pareto.md``/``.csv``/``.png`` into ``out``; return the front's rows, smallest objective first."""
    done = completed(rows)
    points = [(r["metrics"]["objective"], r["metrics"]["val_error"]) for r in done]
    front = sorted((done[i] for i in non_dominated(points)), key=lambda r: r["metrics"]["objective"])
    table = [{"trial": r["trial"], "method": r["values"]["method"], "settings": _settings_text(r["values"]),
              **{k: r["metrics"][k] for k in ("objective", "ratio", "val_error")},
              "within_budget": "yes" if r["metrics"]["within_budget"] else "no"} for r in front]
    objective = runner.settings.objective
    columns = [("trial",), ("method",), ("settings",), ("objective", LABELS[objective], "{:.4g}"),
               ("ratio", "x better than reference", "{:.3g}"), ("val_error", "selection error", "{:.4g}"),
               ("within_budget", "within budget")]
    title = (f"Pareto front: {LABELS[objective]} vs selection error (reference {runner.reference_objective:.4g} at "
             f"{runner.reference_error:.4g}; budget {runner.error_budget:.4g})")
    write_table(out / "pareto", table, columns, title=title)
    if done:
        plots.pareto_front([(x, y, not runner.within(y)) for x, y in points],
                           [(r["metrics"]["objective"], r["metrics"]["val_error"]) for r in front],
                           runner.error_budget, (runner.reference_objective, runner.reference_error),
                           out / "pareto.png", LABELS[objective], "selection error" +
                           (" (%)" if runner.task == "classification" else " ε (positions)"))
    return front
