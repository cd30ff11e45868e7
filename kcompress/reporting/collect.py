"""Gather model directories and turn each ``run.json`` into one flat row of a report.

Any mix of folders may be given: a model directory (a reference or a compression), a sweep
folder (``*/run.json``) or a tuning folder (``trial_*/model/run.json``; its ``best/`` copy is
left out so that the best trial is not counted twice). Everything comes from the records; no
model is loaded, so a report over a hundred sweeps takes no TensorFlow start-up. A reference
that is only a ``parent`` is described from its children's records (``reference_metrics``,
``reference_params``, ``reference_tflite_gzip_bytes``).
"""
import json
import re
from pathlib import Path

from kcompress.core.modeldir import RUN_FILE, model_file_digest
from kcompress.core.record import RunRecord
from kcompress.errors import UsageError, require

SHARED = ("shared", "sparse+shared", "int8")  # the encodings of core.stats that store a codebook (int8: a grid)


def model_dirs(paths):
    """The model directories in ``paths`` (each a model, sweep or tuning folder), in order."""
    found = []
    for path in map(Path, paths):
        require(path.is_dir(), f"report: {path} is not a directory")
        if (path / RUN_FILE).is_file():
            dirs = [path]
        else:
            dirs = sorted((p.parent for p in path.glob(f"trial_*/model/{RUN_FILE}")), key=_natural)
            dirs = dirs or sorted((p.parent for p in path.glob(f"*/{RUN_FILE}") if not p.parent.name.startswith(".")),
                                  key=_natural)
        require(dirs, f"report: {path} holds no model directory ({RUN_FILE}, */{RUN_FILE} or trial_*/model/{RUN_FILE})")
        found += [d for d in dirs if d not in found]
    return found


def _natural(path):
    """Sort key putting ``clusters4`` before ``clusters16`` (numbers in names compared as numbers)."""
    return [(0, float(t), "") if re.fullmatch(r"\d+(\.\d+)?", t) else (1, 0.0, t)
            for t in re.split(r"(\d+(?:\.\d+)?)", str(path)) if t]


def read_record(folder):
    """The record of ``folder`` (exit 2 naming it if it is not a kcompress record with metrics)."""
    record = RunRecord.read(folder, where=f"report: {folder}")
    require(record.metrics is not None, f"report: {folder}/{RUN_FILE} has no metrics")
    return record


def metric_keys(metrics):
    """``(name, train key, test key)``: error % for classes, ε (max |error|) for regression."""
    if "max_error" in metrics:
        return "ε", "train_max_error", "max_error"
    return "error %", "train_error", "test_error"


def series(record):
    """The line a model belongs to in the figures: its method, and for LC its compression types
    (``lc prune-l0``, ``lc quant+prune-l0``), as LC's types differ more than methods do."""
    if record.method_name != "lc":
        return record.method_name
    tasks = record.method_detail("tasks", [])
    return "lc " + ",".join(sorted({compression_types(t["task"]) for t in tasks}))


def compression_types(task):
    """``dense_1:quant:k=2+prune-l0:kappa=0.01`` -> ``quant+prune-l0``."""
    return "+".join(part.split(":")[0] for part in task.split(":", 1)[-1].split("+"))


def sweep_points(settings):
    """``[{axis: value}]``, one per run of a sweep given the runs' ``settings`` dicts: the
    settings that differ between runs, and LC's ``--sweep`` entries (its tasks then differ
    only through them, so ``task`` is left out)."""
    names = [k for k in settings[0] if k not in ("task", "sweep")
             and len({json.dumps(s.get(k), sort_keys=True) for s in settings}) > 1]
    return [{**{k: s.get(k) for k in names}, **dict(e.split("=", 1) for e in s.get("sweep") or ())}
            for s in settings]


def kernel_counts(layers):
    """``(most distinct values in a kernel, codebook size or None)`` over the compression statistics'
    ``layers``; the codebook is the most distinct values among kernels stored with shared values (None:
    the model is not quantized)."""
    kernels = [a for layer in layers for n, a in layer["arrays"].items() if n == "kernel"]
    distinct = max((a["distinct"] for a in kernels), default=None)
    shared = [a["distinct"] for a in kernels if a["encoding"] in SHARED]
    return distinct, (max(shared) if shared else None)


def row(record, folder):
    """One report row of the :class:`RunRecord` ``record`` of model directory ``folder``."""
    metrics, total = record.metrics, record.total_compression
    name, train_key, test_key = metric_keys(metrics)
    distinct, codebook = kernel_counts(record.layer_compression)
    return {"model": str(folder), "method": record.method_name,
            "series": series(record), "setting": record.label or Path(folder).name,
            "data": record.data_name, "metric": name,
            "train": metrics.get(train_key), "test": metrics.get(test_key), "params": total.get("params"),
            "nonzeros": total.get("nonzeros"), "distinct": distinct, "codebook": codebook,
            "bits_ratio": total.get("bits_ratio"),
            "root_bits_ratio": total["root_bits_ratio"] if "root_bits_ratio" in total else _from_a_root(record, total),
            "tflite_gzip_bytes": total.get("tflite_gzip_bytes"), "parent": record.parent,
            "reference": _reference(record), "stale": _stale(record, folder)}


def _from_a_root(record, total):
    """The bits ratio of a record written before roots were recorded, if its parent is a reference
    (the ratio against its parent is then the one against the root), else None."""
    try:
        parent = RunRecord.read(record.parent) if record.parent else None
    except UsageError:
        return None
    return total.get("bits_ratio") if parent and parent.is_reference else None


def _stale(record, folder):
    """Whether ``folder``'s model file was replaced after its record was written (its metrics then
    describe other weights)."""
    return record.model_sha1 not in (None, model_file_digest(folder))


def _reference(record):
    """The parent's row as the child's record describes it (None for a trained model)."""
    ref_metrics, total = record.reference_metrics, record.total_compression
    if not ref_metrics:
        return None
    name, train_key, test_key = metric_keys(ref_metrics)
    return {"model": record.parent, "method": "reference", "series": "reference",
            "setting": Path(record.parent or "reference").name,
            "data": record.data_name, "metric": name,
            "train": ref_metrics.get(train_key), "test": ref_metrics.get(test_key),
            "params": total.get("reference_params"), "nonzeros": total.get("reference_nonzeros"), "bits_ratio": 1.0,
            "root_bits_ratio": _root_ratio(record, total.get("reference_bits")),
            "tflite_gzip_bytes": total.get("reference_tflite_gzip_bytes")}


def _root_ratio(record, bits):
    """The root reference's bits over ``bits`` (None for a record from before roots were recorded)."""
    return record.root_bits / bits if record.root_bits and bits else None


def collect(paths):
    """Rows of every model directory in ``paths``, references first: a given reference is
    completed from its children's records, a parent not given is added from them."""
    rows = [row(read_record(d), d) for d in model_dirs(paths)]
    refs = {}
    for r in rows:
        if r["reference"] and r["parent"]:
            refs.setdefault(str(Path(r["parent"]).resolve()), r["reference"])
    for r in rows:
        known = refs.pop(str(Path(r["model"]).resolve()), None)
        if known and r["method"] == "reference":
            r.update({k: v for k, v in known.items() if r.get(k) is None})
    added = [{**ref, "reference": None, "parent": None} for ref in refs.values()]
    return sorted(added + rows, key=lambda r: r["method"] != "reference")
