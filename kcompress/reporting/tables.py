"""The one table writer: rows of dicts as markdown (to print and read) and CSV (to load).

Every table kcompress writes — sweeps, per-α steps, trials of a search, export reports, the
demo's summary, LC steps — goes through :func:`table` / :func:`write_table`, so that they all
format numbers alike and a CSV always holds the full-precision values behind the markdown.
"""
import csv
import io
from pathlib import Path


def column(spec):
    """``(key, header, format)`` from a column spec: a key, or a tuple of 1 to 3 of those."""
    spec = (spec,) if isinstance(spec, str) else tuple(spec)
    key = spec[0]
    header = spec[1] if len(spec) > 1 else key
    fmt = spec[2] if len(spec) > 2 else None
    return key, header, fmt


def cell(value, fmt=None):
    """A value as markdown shows it: ``fmt`` (a format string or a function), floats to 4
    significant digits, ``None`` as ``-``."""
    if value is None or value == "":
        return "-"
    if callable(fmt):
        return fmt(value)
    if fmt:
        return fmt.format(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(rows, columns):
    """``(markdown, csv)`` text of ``rows`` (dicts) over ``columns`` (see :func:`column`)."""
    cols = [column(c) for c in columns]
    md = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(cell(r.get(k), f) for k, _, f in cols) + " |" for r in rows]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([h for _, h, _ in cols])
    writer.writerows([["" if r.get(k) is None else r.get(k) for k, _, _ in cols] for r in rows])
    return "\n".join(md) + "\n", out.getvalue()


def write_table(path, rows, columns, title=None):
    """Write ``path.md`` (with an optional ``# title``) and ``path.csv``; return the markdown."""
    md, text = table(rows, columns)
    path = Path(path)
    path.with_suffix(".md").write_text((f"# {title}\n\n" if title else "") + md)
    path.with_suffix(".csv").write_text(text)
    return md
