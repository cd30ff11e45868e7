"""From settings to a model directory: the one pipeline behind ``train``, ``compress``, sweeps
and tuning trials.

:func:`train` and :func:`compress` write a whole model directory (or a sweep folder) into a
staged folder that is renamed into place only when complete. :func:`train_model` and
:func:`compress_one` do the work into a given folder and hand the model back in memory, which
is what a tuning trial needs. Every ``run.json`` carries ``data_spec`` — the dataset, its
validation share and seed — inherited through any chain of compressions, so that any command
taking ``--from`` finds the data again without a flag.
"""
import contextlib
import sys
import time
from dataclasses import replace
from pathlib import Path

from kcompress.backend import set_seed
from kcompress.core.data import load_dataset
from kcompress.core.modeldir import (
    RUN_FILE,
    check_out_dir,
    load_model,
    read_run,
    run_record,
    save_model,
    staged_dir,
    write_json,
)
from kcompress.core.objectives import evaluate_model, predict, primary_metric
from kcompress.core.stats import compression_stats, format_stats, weights_digest
from kcompress.core.surgery import clone
from kcompress.core.zoo import build_model
from kcompress.errors import require
from kcompress.export.convert import tflite_size
from kcompress.methods import get_method
from kcompress.methods.base import Reference
from kcompress.report import plots
from kcompress.report.summary import write_sweep
from kcompress.training.config import TrainConfig
from kcompress.training.loop import fit


# ---------------------------------------------------------------- the data of a model directory
def data_spec(run, folder):
    """``{"data", "val_split", "seed"}``: how the model in ``folder`` (its ``run.json``) got its data."""
    spec = run.get("data_spec")
    if spec is None and run.get("kind") == "train":  # records written before data_spec existed
        s = run.get("settings") or {}
        spec = {"data": s.get("data"), "val_split": s.get("val_split", 0.0), "seed": run.get("seed", 0)}
    require(spec and spec.get("data"), f"--from {folder}: {RUN_FILE} does not say which data the model was made "
                                       "with (no data_spec); give --data")
    return spec


def load_reference(folder, data=None):
    """A :class:`~kcompress.methods.base.Reference` from model directory ``folder``.

    The dataset is the one the model was made with (same spec, split and seed, from
    ``data_spec``) unless ``data`` names another; its shapes must fit the model."""
    model, run = load_model(folder), read_run(folder)
    spec = dict(data_spec(run, folder)) if data is None else {"data": data, "val_split": 0.0, "seed": run.get("seed", 0)}
    ds = load_dataset(spec["data"], spec["val_split"], spec["seed"])
    want = tuple(model.inputs[0].shape[1:])
    require(want == ds.input_shape, f"--data: samples of shape {ds.input_shape} do not fit the model's input {want}")
    out_dim = model.outputs[0].shape[-1]
    require(ds.task != "classification" or ds.num_classes <= out_dim,
            f"--data: {ds.num_classes} classes but the model has {out_dim} outputs")
    train = TrainConfig.from_dict(run.get("train") or run.get("settings") or {}, strict=False)
    run = _true_to_the_weights(run, model, ds if data is None else None, folder)
    return Reference(model=model, run=run, data=ds, train=train, folder=Path(folder), data_spec=spec)


def _true_to_the_weights(run, model, data, folder):
    """``run`` as it holds for the weights in ``folder``: a record written for other weights (the
    model file was replaced afterwards) gets its metrics measured again (on ``data``, the
    record's own dataset) and its TFLite size dropped, with a one-line notice."""
    if run.get("weights_sha1") in (None, weights_digest(model.get_weights())):
        return run
    print(f"kcompress: notice: {folder} holds other weights than its {RUN_FILE} was written for; "
          "its metrics are measured again", file=sys.stderr)
    run = {k: v for k, v in run.items() if k not in ("tflite", "compression")}
    return {**run, "metrics": evaluate_model(model, data) if data is not None else None}


# ---------------------------------------------------------------- writing a model directory
def finish(model, data, record, folder, title, plot=None, markers=()):
    """Evaluate ``model``, save it with ``record`` (metrics added) and its plots into ``folder``."""
    folder = Path(folder)
    test_pred = predict(model, data.x_test)
    record["metrics"] = evaluate_model(model, data, test_pred=test_pred)
    record["weights_sha1"] = weights_digest(model.get_weights())
    save_model(model, folder)
    write_json(folder / RUN_FILE, record)
    history = record.get("history") or {}
    if history.get("loss"):
        plots.training_curves(history, folder / "training.png", title=title, markers=markers)
    if data.task == "classification":
        plots.confusion_matrix(data.y_test, test_pred.argmax(axis=-1), data.num_classes, folder / "confusion.png")
    if plot:
        plot(folder)
    return record


def train_model(setup, cfg, seed, data, folder, backup_dir=None, scope=None, initial_weights=None):
    """Build zoo model ``setup`` (:class:`~kcompress.core.modelspec.ModelSettings`), train it with
    ``cfg`` on ``data`` and write the model directory ``folder``; returns ``(model, record)``."""
    set_seed(seed)
    with scope or contextlib.nullcontext():
        net = build_model(setup.model, data.input_shape, data.output_dim, setup.hidden, setup.activation)
    if initial_weights is not None:
        net.set_weights(initial_weights)
    history = fit(net, data, cfg, backup_dir=backup_dir, run_key={**setup.to_dict(), "seed": seed})
    record = run_record("train", {**setup.to_dict(), "val_split": setup.split, **cfg.to_dict()}, seed=seed,
                        data_spec={"data": setup.data, "val_split": setup.split, "seed": seed},
                        dataset=data.describe(), parent=None, history=history, train_seconds=history.seconds,
                        execution=history.execution, tflite=tflite_size(net))
    return net, finish(net, data, record, folder, title=f"{setup.model} on {setup.data}")


def train(out, setup, cfg, seed=0, overwrite=False, strategy="none"):
    """Train into the model directory ``out`` (written whole or not at all, one writer at a
    time); resumable after a kill; ``strategy`` distributes the training
    (:mod:`kcompress.training.distribute`)."""
    from kcompress.training import distribute

    dist = distribute.make_strategy(strategy)  # before any TensorFlow op, as multi-worker needs
    final_out, out = out, check_out_dir(distribute.worker_out(out, strategy), overwrite)
    with staged_dir(out, overwrite) as tmp:
        data = load_dataset(setup.data, setup.split, seed, setup.strict_keys)
        _, record = train_model(setup, cfg, seed, data, tmp, backup_dir=out.parent / f".{out.name}.backup",
                                scope=dist.scope())
    distribute.discard_worker_copy(final_out, out)
    return record


# ---------------------------------------------------------------- compression
def compress(from_dir, runs, out, overwrite=False, seed=0):
    """Compress the model in ``from_dir`` into ``out`` with ``runs``, the ``[(label, settings)]``
    of :func:`kcompress.core.settings.expand`: one run writes ``out`` itself; a sweep runs every
    setting from the same reference into ``out/<label>/``, with a table and a plot in ``out``.
    Returns the record (a list for a sweep)."""
    check_out_dir(out, overwrite)
    ref = load_reference(from_dir)
    with staged_dir(out, overwrite) as tmp:
        if len(runs) == 1:
            return compress_one(ref, runs[0][1], tmp, seed)[0]
        records = []
        for label, settings in runs:
            (tmp / label).mkdir()
            records.append(compress_one(ref, settings, tmp / label, seed, label=label)[0])
        write_sweep(records, tmp)
        return records


def compress_one(ref, settings, folder, seed=0, label=""):
    """Run one method setting on a copy of the reference; measure, save and plot it into
    ``folder``. Returns ``(record, compressed model)``."""
    set_seed(seed)
    start = time.perf_counter()
    result = get_method(settings.NAME).run(replace(ref, model=clone(ref.model)), settings)
    seconds = time.perf_counter() - start
    stats = compression_stats(result.model, ref.model)
    stats["total"].update(tflite_size(result.model))
    stats["total"].update({f"reference_{k}": v for k, v in ref.tflite_size().items()})
    record = run_record("compress", {"method": settings.NAME, **settings.to_dict()}, seed=seed, label=label,
                        parent=str(ref.folder), data_spec=ref.data_spec, dataset=ref.data.describe(),
                        train=ref.train.to_dict(), reference_metrics=ref.run.get("metrics"), compression=stats,
                        history=result.history, method=result.record, compress_seconds=seconds)
    finish(result.model, ref.data, record, folder, title=f"{settings.NAME} {label}".strip(), plot=result.plots)
    print(f"\n[{settings.NAME} {label}] " + summary_line(record, ref.data.task))
    print(format_stats(stats))
    return record, result.model


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
