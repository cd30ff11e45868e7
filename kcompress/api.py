"""The Python API: one function per CLI subcommand, with the same names and settings.

``train`` builds and trains a zoo model and writes a model directory; ``evaluate`` scores
one; ``compress`` runs a registered compression method on a trained model (sweeping any
setting given as a list) and writes the compressed model directory with its statistics;
``export`` converts and verifies deployable files. The CLI only parses flags and calls these.
"""
import itertools
import time
from dataclasses import replace
from pathlib import Path

from kcompress import plots
from kcompress.backend import keras, set_seed
from kcompress.data import default_val_split, load_dataset
from kcompress.errors import require
from kcompress.modeldir import (
    RUN_FILE,
    check_out_dir,
    load_model,
    out_lock,
    read_run,
    run_record,
    save_model,
    staged_dir,
    write_json,
)
from kcompress.objectives import evaluate_model, predict, primary_metric
from kcompress.training import TrainConfig, fit
from kcompress.zoo import build_model, parse_hidden


def train(out, model="lenet300", data="mnist-sample", hidden=None, activation="relu", val_split=None, seed=0,
          overwrite=False, strategy="none", strict_keys=False, **settings):
    """Train zoo ``model`` on ``data`` and write the model directory ``out``.

    ``settings`` are :class:`~kcompress.training.TrainConfig` fields (epochs, lr, ...). A run
    killed half-way resumes from its last checkpoint when the same command is run again.
    ``strategy`` (none, mirrored, multiworker) distributes training, see :mod:`kcompress.distribute`.
    ``val_split`` defaults to 0.1, and to 0 for learned-index keys (an index must hold every
    key). Returns the ``run.json`` record.
    """
    from kcompress import distribute

    cfg = TrainConfig.from_dict(settings).validate()
    if val_split is None:
        val_split = default_val_split(data)
    dist = distribute.make_strategy(strategy)  # before any TensorFlow op, as multi-worker needs
    final_out, out = out, Path(distribute.worker_out(out, strategy))
    with out_lock(out):
        check_out_dir(out, overwrite)
        ds = load_dataset(data, val_split, seed, strict_keys)
        set_seed(seed)
        with dist.scope():  # variables (and, at compile, optimizer slots) are created replicated
            net = build_model(model, ds.input_shape, ds.output_dim, parse_hidden(hidden), activation)
        backup = out.parent / f".{out.name}.backup"
        setup = dict(model=model, data=data, hidden=parse_hidden(hidden), activation=activation, val_split=val_split)
        with staged_dir(out, overwrite) as tmp:
            history = fit(net, ds, cfg, backup_dir=backup, run_key=dict(setup, seed=seed, strategy=strategy))
            test_pred = predict(net, ds.x_test)
            metrics = evaluate_model(net, ds, test_pred=test_pred)
            save_model(net, tmp)
            record = run_record("train", {**setup, **cfg.to_dict()}, seed=seed, dataset=ds.describe(), parent=None,
                                history=history, metrics=metrics, train_seconds=history.seconds)
            write_json(tmp / RUN_FILE, record)
            write_model_plots(ds, history, tmp, test_pred, title=f"{model} on {data}")
    distribute.discard_worker_copy(final_out, out)
    return record


def write_model_plots(data, history, folder, test_pred, title, markers=()):
    """Training curves, and for classification the confusion matrix of ``test_pred``."""
    if history.get("loss"):
        plots.training_curves(history, Path(folder) / "training.png", title=title, markers=markers)
    if data.task == "classification":
        plots.confusion_matrix(data.y_test, test_pred.argmax(axis=-1), data.num_classes, Path(folder) / "confusion.png")


def load_reference(folder, data=None):
    """A :class:`~kcompress.methods.base.Reference` from model directory ``folder``.

    The dataset is the one the model was trained on (same spec, split and seed) unless
    ``data`` names another; its shapes must fit the model.
    """
    from kcompress.methods.base import Reference

    model = load_model(folder)
    run = read_run(folder)
    s = run["settings"]
    spec = data or s.get("data") or (run.get("dataset") or {}).get("name")
    require(spec, f"--from {folder}: {RUN_FILE} records no data spec (settings.data): give --data")
    ds = load_dataset(spec, s.get("val_split", 0.0), run.get("seed", 0))
    want = tuple(model.inputs[0].shape[1:])
    require(want == ds.input_shape, f"--data: samples of shape {ds.input_shape} do not fit the model's input {want}")
    out_dim = model.outputs[0].shape[-1]
    require(ds.task != "classification" or ds.num_classes <= out_dim,
            f"--data: {ds.num_classes} classes but the model has {out_dim} outputs")
    return Reference(model=model, run=run, data=ds, train=TrainConfig.from_dict(s), folder=Path(folder))


def evaluate(from_dir, data=None):
    """Scores of the model in ``from_dir`` on its dataset (or ``data``)."""
    ref = load_reference(from_dir, data)
    return {"model": str(from_dir), "data": ref.data.name, **evaluate_model(ref.model, ref.data)}


def clone(model):
    """A fresh copy of ``model`` with the same weights (methods never touch the reference)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def compress(from_dir, method, out, overwrite=False, seed=0, **settings):
    """Compress the model in ``from_dir`` with ``method`` and write the result to ``out``.

    A setting listed in the method's ``SWEEPABLE`` may be a list (or a comma string): every
    combination is run from the same reference into ``out/<label>/``, and ``out`` gets a
    table (markdown, CSV) and a plot of error vs compression ratio. Returns the record(s).
    """
    from kcompress.methods import get_method

    mod = get_method(method)
    check_out_dir(out, overwrite)
    ref = load_reference(from_dir)
    runs = sweep_settings(mod, settings)
    for _, s in runs:  # bad input fails before any run of a sweep starts
        getattr(mod, "check_settings", lambda s: None)(s)
    with staged_dir(out, overwrite) as tmp:
        if len(runs) == 1:
            return compress_one(ref, mod, runs[0][1], tmp, seed)
        records = []
        for label, s in runs:
            (tmp / label).mkdir()
            records.append(compress_one(ref, mod, s, tmp / label, seed, label=label))
        write_sweep(records, ref, tmp)
        return records


def sweep_settings(mod, settings):
    """``[(label, settings)]``: one entry per combination of the list-valued sweepable settings."""
    axes = {}
    for key in getattr(mod, "SWEEPABLE", ()):
        value = settings.get(key)
        if isinstance(value, str) and "," in value:
            value = value.split(",")
        if isinstance(value, (list, tuple)) and len(value) > 1:
            axes[key] = list(value)
        elif isinstance(value, (list, tuple)):
            settings = {**settings, key: value[0]}
    if not axes:
        return [("", settings)]
    combos = itertools.product(*axes.values())
    return [("-".join(f"{k}{v}" for k, v in zip(axes, c)), {**settings, **dict(zip(axes, c))}) for c in combos]


def compress_one(ref, mod, settings, folder, seed, label=""):
    """Run one method setting on a copy of the reference; measure, save and plot it."""
    from kcompress.convert import tflite_size
    from kcompress.stats import compression_stats, format_stats

    set_seed(seed)
    start = time.perf_counter()
    result = mod.run(replace(ref, model=clone(ref.model)), dict(settings))
    seconds = time.perf_counter() - start
    test_pred = predict(result.model, ref.data.x_test)
    metrics = evaluate_model(result.model, ref.data, test_pred=test_pred)
    stats = compression_stats(result.model, ref.model)
    stats["total"].update(tflite_size(result.model))
    stats["total"].update({f"reference_{k}": v for k, v in ref.tflite_size().items()})
    save_model(result.model, folder)
    record = run_record("compress", {"method": mod.NAME, **settings}, seed=seed, label=label,
                        parent=str(ref.folder), dataset=ref.data.describe(), reference_metrics=ref.run.get("metrics"),
                        metrics=metrics, compression=stats, history=result.history, method=result.record,
                        compress_seconds=seconds)
    write_json(Path(folder) / RUN_FILE, record)
    write_model_plots(ref.data, result.history, folder, test_pred, title=f"{mod.NAME} {label}".strip())
    if result.plots:
        result.plots(Path(folder))
    print(f"\n[{mod.NAME} {label}] " + summary_line(record, ref.data.task))
    print(format_stats(stats))
    return record


def summary_line(record, task):
    """``test error 4.1 % (reference 3.9 %) · 12.3x fewer bits · TFLite gzip 20 KiB``."""
    key = primary_metric(task)
    m, ref = record["metrics"], record.get("reference_metrics") or {}
    unit = " %" if task == "classification" else " positions"
    name = "test error" if task == "classification" else "ε"
    t = record["compression"]["total"]
    return (f"{name} {m[key]:.2f}{unit} (reference {ref.get(key, float('nan')):.2f}{unit}) · "
            f"{t['bits_ratio']:.1f}x fewer bits · TFLite gzip {t['tflite_gzip_bytes'] / 1024:.1f} KiB "
            f"(reference {t['reference_tflite_gzip_bytes'] / 1024:.1f} KiB)")


def write_sweep(records, ref, folder):
    """``sweep.md``, ``sweep.csv`` and ``sweep.png`` over the runs of a sweep."""
    key = primary_metric(ref.data.task)
    rows = [(r["label"], r["metrics"][key], r["compression"]["total"]["bits_ratio"],
             r["compression"]["total"]["tflite_gzip_bytes"]) for r in records]
    head = ("setting", key, "bits_ratio", "tflite_gzip_bytes")
    ref_error = ref.run.get("metrics", {}).get(key, float("nan"))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), f"| reference | {ref_error:.3f} | 1.0 | - |"]
    lines += [f"| {a} | {b:.3f} | {c:.2f} | {d} |" for a, b, c, d in rows]
    (folder / "sweep.md").write_text("\n".join(lines) + "\n")
    csv = [",".join(head), f"reference,{ref_error},1.0,"] + [f"{a},{b},{c},{d}" for a, b, c, d in rows]
    (folder / "sweep.csv").write_text("\n".join(csv) + "\n")
    plots.error_vs_ratio([(c, b, a) for a, b, c, _ in rows], ref_error, folder / "sweep.png", key)
    print("\n" + "\n".join(lines))


def export(from_dir, out, formats=("tflite", "onnx"), overwrite=False, **options):
    """Convert the model in ``from_dir`` and verify each file; see :mod:`kcompress.deploy`."""
    from kcompress.deploy import export_and_check

    return export_and_check(from_dir, out, formats=formats, overwrite=overwrite, **options)


def tune(**settings):
    """Hyperparameter search with Keras Tuner; see :mod:`kcompress.tuning`."""
    from kcompress.tuning import tune as _tune

    return _tune(**settings)


def demo(out="models/demo", exported="exported/demo", overwrite=True, **settings):
    """The whole path on the bundled data; see :mod:`kcompress.demo`."""
    from kcompress.demo import run_demo

    return run_demo(out=out, exported=exported, overwrite=overwrite, **settings)
