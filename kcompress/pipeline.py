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
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from kcompress.backend import set_seed
from kcompress.core.data import ARRAYS, binary_targets, load_dataset
from kcompress.core.modeldir import RUN_FILE, check_out_dir, load_model, model_file_digest, save_model, staged_dir
from kcompress.core.modelspec import default_val_split
from kcompress.core.objectives import (
    default_loss,
    evaluate_model,
    infer_head,
    output_activation,
    predict,
    primary_metric,
    score_name,
)
from kcompress.core.record import RunRecord
from kcompress.core.source import Source, check_safe, compiled_loss, compiled_optimizer, file_config, load_model_file, model_kind
from kcompress.core.stats import compression_stats, format_stats, weights_digest
from kcompress.core.surgery import clone
from kcompress.core.zoo import build_model
from kcompress.errors import require
from kcompress.deploy.check import export_and_check
from kcompress.deploy.convert import tflite_size
from kcompress.deploy.settings import ExportSettings
from kcompress.methods import get_method
from kcompress.methods.base import Reference
from kcompress.reporting import plots
from kcompress.reporting.summary import write_sweep
from kcompress.training import curves, distribute
from kcompress.training.config import TrainConfig
from kcompress.training.history import write_csv
from kcompress.training.loop import fit


# ---------------------------------------------------------------- the data of a model directory
def data_spec(run, folder):
    """``{"data", "val_split", "seed"}``: how the model in ``folder`` (its record ``run``) got its data."""
    require(run.data_name, f"--from {folder}: {RUN_FILE} does not say which data the model was made "
                           "with (no data_spec); give --data")
    return run.data_source


def load_reference(source, data=None, loss=None, metric=None):
    """A :class:`~kcompress.methods.base.Reference` from ``source``: a model directory, a model file
    (``.keras``, ``.h5``, a SavedModel folder) or a Keras model object; or a
    :class:`~kcompress.core.source.Source`-like ``(source, data, loss, metric)`` given as arguments.

    A model directory brings its data (same spec, split and seed, from ``data_spec``) unless ``data``
    names another; a bare model needs ``data`` and is evaluated once as the reference. The data's
    shapes and labels must fit the model's input and output."""
    if isinstance(source, (str, Path)) and model_kind(source) == "dir":
        return _directory_reference(source, data, loss, metric)
    return _bare_reference(source, data, loss, metric)


def _directory_reference(folder, data, loss, metric):
    model, run = load_model(folder), RunRecord.read(folder)
    spec = dict(data_spec(run, folder)) if data is None else {"data": data, "val_split": 0.0, "seed": run.seed or 0}
    ds = bind_data(model, load_dataset(spec["data"], spec["val_split"], spec["seed"]),
                   metric or run.objective_of("metric"))
    train = TrainConfig.from_dict(run.training, strict=False)
    if loss:
        train = train.replace(loss=loss)
    run = _true_to_the_weights(run, model, ds if data is None else None, folder)
    return Reference(model=model, run=run, data=ds, train=train, folder=Path(folder), data_spec=spec)


def bind_data(model, ds, metric=None):
    """``ds`` made to fit ``model``: input shapes checked, 0/1 targets of a one-sigmoid model read as
    two classes, the head read off the model's output (:func:`~kcompress.core.objectives.infer_head`),
    and the headline ``metric`` set."""
    want = tuple(model.inputs[0].shape[1:])
    require(want == ds.input_shape, f"--data: samples of shape {ds.input_shape} do not fit the model's input {want}")
    if ds.task == "regression" and output_activation(model) == "sigmoid" and model.outputs[0].shape[-1] == 1:
        ds = binary_targets(ds)
    require(metric is None or (metric == "error") == (ds.task == "classification"),
            f"--metric {metric} does not fit {ds.task} data")
    ds.head, ds.metric = infer_head(model, ds), metric
    return ds


def _bare_reference(source, data, loss, metric):
    """The reference of a model file or object: its data from ``data``, its loss from ``loss``, the file's
    compiled loss or its output, its fine-tuning optimizer from the file (else Adam at 1e-3)."""
    name = getattr(source, "name", None) if not isinstance(source, (str, Path)) else str(source)
    where = f"--from {name}" if isinstance(source, (str, Path)) else f"model {name!r}"
    require(data is not None, f"{where}: a bare model carries no data; give --data (mnist-sample, keys:DIST:N, PATH.npz, ...)")
    model, compiled = _bare_model(source)
    spec = {"data": data if isinstance(data, str) else ARRAYS, "seed": 0}
    spec["val_split"] = default_val_split(spec["data"])
    ds = bind_data(model, load_dataset(data, spec["val_split"], spec["seed"]),
                   metric or ("max_error" if spec["data"].startswith("keys") else None))
    if ds.task == "regression" and ds.metric is None:
        ds.metric = "mse"
    from_file = compiled_loss(compiled)
    loss_name, loss_from = ((loss, "--loss") if loss else (from_file, "compiled into the model") if from_file
                            else (default_loss(ds.task), f"implied by the {ds.head} output and the labels"))
    require(loss_name != "xent" or ds.task == "classification",
            f"{where}: the loss {loss_name} ({loss_from}) needs class labels, but --data holds float targets")
    train = TrainConfig.from_dict({"optimizer": "adam", "lr": 1e-3, **compiled_optimizer(compiled), "loss": loss_name})
    objective = {"head": ds.head, "loss": loss_name, "loss_from": loss_from, "metric": score_name(ds),
                 "metric_from": "--metric" if metric else "the task's default"}
    run = RunRecord(kind="import", source={"path": name, "weights_sha1": weights_digest(model.get_weights())},
                    data_spec=spec, dataset=ds.describe(), objective=objective, train=train.to_dict(),
                    metrics=evaluate_model(model, ds))
    folder = Path(source) if isinstance(source, (str, Path)) else None
    return Reference(model=model, run=run, data=ds, train=train, folder=folder, data_spec=spec)


def _bare_model(source):
    """``(model, compile config)`` of a model file or object (the object as it is: methods work on copies)."""
    if not isinstance(source, (str, Path)):
        require(hasattr(source, "get_weights") and getattr(source, "inputs", None),
                f"expected a built Keras model, a model file or a model directory, got {type(source).__name__}")
        compiled = None
        if getattr(source, "optimizer", None) is not None and getattr(source, "loss", None) is not None:
            compiled = {"loss": source.loss if isinstance(source.loss, str) else {"class_name": type(source.loss).__name__},
                        "optimizer": {"class_name": type(source.optimizer).__name__,
                                      "config": {"learning_rate": float(source.optimizer.learning_rate.numpy())}}}
        return source, compiled
    kind = model_kind(source)
    config, compiled = file_config(source, kind)
    check_safe(source, config)
    return load_model_file(source, kind), compiled


def _true_to_the_weights(run, model, data, folder):
    """``run`` as it holds for the weights in ``folder``: a record written for other weights (the
    model file was replaced afterwards) gets its metrics measured again (on ``data``, the
    record's own dataset) and its TFLite size dropped, with a one-line notice."""
    if run.weights_sha1 in (None, weights_digest(model.get_weights())):
        return run
    print(f"kcompress: notice: {folder} holds other weights than its {RUN_FILE} was written for; "
          "its metrics are measured again", file=sys.stderr)
    return replace(run, tflite=None, compression=None, root=None,
                   metrics=evaluate_model(model, data) if data is not None else None)


# ---------------------------------------------------------------- writing a model directory
def finish(model, data, record, folder, title, plot=None, markers=(), files=None):
    """Evaluate ``model``, save it with its :class:`RunRecord` ``record`` (metrics added), its plots and
    ``files`` (name → bytes, a method's own files) into ``folder``."""
    folder = Path(folder)
    test_pred = predict(model, data.x_test)
    record.metrics = evaluate_model(model, data, test_pred=test_pred)
    record.weights_sha1 = weights_digest(model.get_weights())
    save_model(model, folder)
    for name, blob in (files or {}).items():
        (folder / name).write_bytes(blob)
    record.model_sha1 = model_file_digest(folder)
    record.write(folder)
    history = record.curves
    if history.get("loss"):
        write_csv(history, folder / "history.csv")
        plots.training_curves(history, folder / "training.png", title=title, markers=markers)
    steps = curves.save(folder)
    if steps:
        plots.step_curves(steps, folder / "steps.png", title)
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
    record = RunRecord.new("train", {**setup.to_dict(), "val_split": setup.split, **cfg.to_dict()}, seed=seed,
                           data_spec={"data": setup.data, "val_split": setup.split, "seed": seed},
                           dataset=data.describe(), history=history, train_seconds=history.seconds,
                           execution=history.execution, tflite=tflite_size(net), resolved=setup.resolved() or None)
    return net, finish(net, data, record, folder, title=f"{setup.model} on {setup.data}")


def train(out, setup, cfg, seed=0, overwrite=False, strategy="none"):
    """Train into the model directory ``out`` (written whole or not at all, one writer at a
    time); resumable after a kill; ``strategy`` distributes the training
    (:mod:`kcompress.training.distribute`)."""
    dist = distribute.make_strategy(strategy)  # before any TensorFlow op, as multi-worker needs
    final_out, out = out, check_out_dir(distribute.worker_out(out, strategy), overwrite)
    with staged_dir(out, overwrite) as tmp:
        data = load_dataset(setup.data, setup.split, seed, setup.strict_keys)
        _, record = train_model(setup, cfg, seed, data, tmp, backup_dir=out.parent / f".{out.name}.backup",
                                scope=dist.scope())
    distribute.discard_worker_copy(final_out, out)
    return record


def import_model(source, out, data, loss=None, metric=None, overwrite=False):
    """Write the model directory ``out`` from a bare model (file or object) evaluated on ``data``: the
    reference of later compressions, which then need no ``--data``. Returns its record."""
    check_out_dir(out, overwrite, sources=(source,))
    require(not (isinstance(source, (str, Path)) and model_kind(source) == "dir"),
            f"--from {source}: already a model directory; compress it directly")
    ref = _bare_reference(source, data, loss, metric)
    with staged_dir(out, overwrite) as tmp:
        record = RunRecord.new("import", {}, seed=0, tflite=tflite_size(ref.model), source=ref.run.source,
                               data_spec=ref.run.data_spec, dataset=ref.run.dataset, objective=ref.run.objective,
                               train=ref.run.train)
        record = finish(ref.model, ref.data, record, tmp, title=f"{ref.model.name} on {ref.data.name}")
    print(f"imported {record.source['path']} into {out}: " + ", ".join(
        f"{k} {v:.4g}" for k, v in record.metrics.items() if isinstance(v, float)))
    return record


# ---------------------------------------------------------------- export
def export(source, out, overwrite=False, seed=0, data=None, metric=None, **options):
    """Export the reference ``source`` (see :func:`load_reference`) to ``out`` and verify every file;
    ``options`` are :class:`~kcompress.deploy.settings.ExportSettings` fields. Returns the report."""
    s = ExportSettings.from_dict(options)
    Source(data=data if isinstance(data, str) else None, metric=metric).validate()  # arrays need no check here
    check_out_dir(out, overwrite, sources=(source,))
    return export_and_check(load_reference(source, data, metric=metric), out, s, overwrite=overwrite, seed=seed)


# ---------------------------------------------------------------- compression
def compress(source, runs, out=None, overwrite=False, seed=0, data=None, loss=None, metric=None):
    """Compress the reference ``source`` (see :func:`load_reference`, with ``data``, ``loss`` and ``metric``)
    with ``runs``, the ``[(label, settings)]`` of :func:`kcompress.core.settings.expand`: one run writes
    ``out`` itself; a sweep runs every setting from the same reference into ``out/<label>/``, with a table
    and a plot in ``out``. Without ``out`` nothing is kept on disk. Returns ``(reference, [(record, model)])``."""
    if out is not None:
        check_out_dir(out, overwrite, sources=(source,))
    ref = load_reference(source, data, loss, metric)
    with staged_dir(out, overwrite) if out is not None else tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if len(runs) == 1:
            return ref, [compress_one(ref, runs[0][1], tmp, seed)]
        results = []
        for label, settings in runs:
            (tmp / label).mkdir()
            results.append(compress_one(ref, settings, tmp / label, seed, label=label))
        write_sweep([r for r, _ in results], tmp)
        return ref, results


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
    parent = str(ref.folder) if ref.folder else None
    root = root_of(ref.run, parent, stats["total"])
    record = RunRecord.new("compress", {"method": settings.NAME, **settings.to_dict()}, seed=seed, label=label,
                           parent=parent, root=root, data_spec=ref.data_spec, source=ref.run.source,
                           objective=ref.run.objective, dataset=ref.data.describe(), train=ref.train.to_dict(),
                           reference_metrics=ref.run.metrics, compression=stats, history=result.history,
                           method=result.record, resolved=result.resolved or None, compress_seconds=seconds)
    finish(result.model, ref.data, record, folder, title=f"{settings.NAME} {label}".strip(), plot=result.plots,
           files=result.files)
    print(f"\n[{settings.NAME} {label}] " + summary_line(record, ref.data))
    print(format_stats(stats))
    return record, result.model


def root_of(parent_run, parent, total):
    """The first reference of a chain of compressions (train → prune → cluster → LC): the parent's own
    root, or the parent when it is a reference; adds ``root_bits_ratio`` (root's bits / these bits)
    to ``total``, beside ``bits_ratio`` (the parent's bits / these bits)."""
    root = parent_run.root or {"path": parent, "bits": total["reference_bits"]}
    total["root_bits_ratio"] = root["bits"] / total["bits"] if total["bits"] else float("inf")
    return root


def summary_line(record, data):
    """``test error 4.1 % (reference 3.9 %) · 12.3x fewer bits · TFLite gzip 20 KiB``."""
    key = primary_metric(data)
    unit = {"test_error": " %", "max_error": " positions"}.get(key, "")
    name = {"test_error": "test error", "max_error": "ε"}.get(key, f"test {key}")
    t, ref = record.total_compression, record.reference_metric(key, float("nan"))
    return (f"{name} {record.metric(key):.2f}{unit} (reference {ref:.2f}{unit}) · "
            f"{t['bits_ratio']:.1f}x fewer bits · TFLite gzip {t['tflite_gzip_bytes'] / 1024:.1f} KiB "
            f"(reference {t['reference_tflite_gzip_bytes'] / 1024:.1f} KiB)")
