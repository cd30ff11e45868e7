"""The tables and figures of ``kcompress report`` and of a sweep folder.

``report``: one table over any set of model directories (``report.md`` / ``report.csv``) and,
per dataset and metric, error (train and test) against the bits ratio, the parameters kept and
— for quantized models — the codebook size, with the reference as a line.

A sweep folder gets ``sweep.md`` / ``sweep.csv`` / ``sweep.png`` from the same rows; a sweep
over two or more settings (``--sparsity 0.5,0.9 --clusters 4,16``) also gets
``sweep_grid.md`` / ``sweep_grid.csv`` (one row per value of the first settings, error and
ratio per value of the last) and draws one line per value of the last setting.
"""
import re
import sys
from pathlib import Path

from kcompress.reporting.collect import collect, metric_keys, row, sweep_points
from kcompress.reporting.figures import error_vs
from kcompress.reporting.tables import write_table

SIZE_COLUMNS = [("params",), ("nonzeros",), ("distinct",), ("codebook",), ("bits_ratio", "bits_ratio", "{:.2f}"),
                ("tflite_gzip_bytes",)]
# bits ratio of each row against its parent (the model it was compressed from) and against the root
# reference of its chain (train → prune → cluster → LC: the trained model)
REPORT_COLUMNS = [("model",), ("method",), ("setting",), ("metric",), ("train", "train", "{:.3f}"),
                  ("test", "test", "{:.3f}"), ("params",), ("nonzeros",), ("distinct",), ("codebook",),
                  ("bits_ratio", "bits_ratio_vs_parent", "{:.2f}"), ("root_bits_ratio", "bits_ratio_vs_root", "{:.2f}"),
                  ("tflite_gzip_bytes",)]
# the deployable files as shipped (see kcompress.deploy.sizes): the smallest gzip'd file and its format,
# the int8 file, the smallest raw file
FILE_COLUMNS = [("deployed_gzip_bytes", "smallest_gzip_bytes"), ("deployed_gzip_file", "smallest_gzip_file"),
                ("int8_gzip_bytes",), ("deployed_bytes", "smallest_raw_bytes"), ("deployed_file", "smallest_raw_file")]
FIGURES = (("root_bits_ratio", "error_vs_ratio"), ("nonzeros", "error_vs_params"), ("codebook", "error_vs_codebook"),
           ("deployed_gzip_bytes", "error_vs_file"))
MEASURED_AGAIN = ("params", "nonzeros", "distinct", "codebook", "bits_ratio", "root_bits_ratio", "tflite_gzip_bytes")


def write_report(paths, folder, measure, files=None):
    """Table and figures over the model directories in ``paths`` into ``folder``; returns the rows.
    A model whose file was replaced after its record was written gets its metrics from
    ``measure(folder)`` (its size columns, which describe the old weights, are left empty).
    ``files(folder)``, if given, measures the deployable files of each model (:data:`FILE_COLUMNS`)."""
    rows = [_measured_again(r, measure) if r.get("stale") else r for r in collect(paths)]
    columns = REPORT_COLUMNS
    if files is not None:
        rows = [_with_files(r, files) for r in rows]
        columns = REPORT_COLUMNS + FILE_COLUMNS
    md = write_table(Path(folder) / "report", rows, columns, title="kcompress report")
    groups = {}
    for r in rows:
        groups.setdefault((r["data"], r["metric"]), []).append(r)
    for (data, metric), members in groups.items():
        refs = [r for r in members if r["method"] == "reference"]
        lines = {}
        for r in members:
            if r["method"] != "reference":
                lines.setdefault(r["series"], []).append(r)
        for x_key, name in FIGURES:
            if any(r.get(x_key) is not None for rows_ in lines.values() for r in rows_):
                error_vs(lines, refs, x_key, Path(folder) / f"{name}-{slug(data)}.png", metric,
                         title=f"{data}: {metric} vs {name.removeprefix('error_vs_')}")
    print(md)
    return rows


def _with_files(r, files):
    """``r`` with its files' sizes: a stale model's (its record describes other weights) and a parent
    that no longer exists on disk are left without."""
    if r.get("stale") or not Path(r["model"]).is_dir():
        return r
    print(f"kcompress: measuring the deployable files of {r['model']}", file=sys.stderr, flush=True)
    return {**r, **files(r["model"])}


def _measured_again(r, measure):
    print(f"kcompress: notice: {r['model']}'s model file was replaced after its record was written: "
          "its metrics are measured again, its sizes left out", file=sys.stderr)
    metrics = measure(r["model"])
    _, train_key, test_key = metric_keys(metrics)
    return {**r, **dict.fromkeys(MEASURED_AGAIN), "train": metrics.get(train_key), "test": metrics.get(test_key)}


def slug(text):
    """A file-name-safe form of a dataset name: ``keys:uniform:600`` -> ``keys-uniform-600``,
    ``data/tab.npz`` -> ``data-tab-npz``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-") or "data"


def write_sweep(records, folder):
    """``sweep.*`` (and ``sweep_grid.*`` over two or more settings) for the ``records`` of a sweep."""
    folder = Path(folder)
    rows = [row(r, folder / r.label) for r in records]
    points = sweep_points([r.settings for r in records])
    axes = list(points[0])
    for r, p in zip(rows, points):
        r.update(p)
    ref = rows[0]["reference"]
    regression = rows[0]["metric"] == "ε"
    train_key, test_key = ("train_max_error", "max_error") if regression else ("train_error", "test_error")
    columns = [("setting",), *axes, ("train", train_key, "{:.3f}"), ("test", test_key, "{:.3f}"), *SIZE_COLUMNS]
    print("\n" + write_table(folder / "sweep", [{**ref, "setting": "reference"}, *rows] if ref else rows, columns))
    if len(axes) >= 2:
        print(write_grid(rows, axes, folder / "sweep_grid", test_key))
        lines = {f"{axes[-1]}={v}": [r for r in rows if r[axes[-1]] == v] for v in _ordered(rows, axes[-1])}
    else:
        lines = {rows[0]["series"]: rows}
    error_vs(lines, [ref] if ref else [], "bits_ratio", folder / "sweep.png", rows[0]["metric"],
             title=f"{rows[0]['series']} sweep: train and test {rows[0]['metric']} vs compression ratio")


def write_grid(rows, axes, path, test_key):
    """One row per combination of all but the last axis; the test error and the bits ratio
    for each value of the last axis side by side."""
    *outer, last = axes
    grid = {}
    for r in rows:
        cells = grid.setdefault(tuple(r[a] for a in outer), dict(zip(outer, (r[a] for a in outer))))
        cells.update({f"{last}{r[last]} {test_key}": r["test"], f"{last}{r[last]} bits_ratio": r["bits_ratio"]})
    columns = [*outer]
    for v in _ordered(rows, last):
        columns += [(f"{last}{v} {test_key}", f"{last}={v} {test_key}", "{:.3f}"),
                    (f"{last}{v} bits_ratio", f"{last}={v} bits_ratio", "{:.2f}")]
    ordered = sorted(grid.values(), key=lambda g: tuple(_number(g[a]) for a in outer))
    return write_table(path, ordered, columns)


def _number(value):
    """``value`` as a float where it is one (sweep values may be strings, ``"0.01"``), for sorting."""
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))


def _ordered(rows, axis):
    return sorted({r[axis] for r in rows}, key=_number)
