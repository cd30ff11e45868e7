"""The Python API: one function per CLI subcommand, with the same names and settings.

Any Keras model goes in: a model object, a ``.keras``/``.h5`` file, a SavedModel folder, or a model
directory written by kcompress. A bare model needs ``data`` (numpy arrays as a dict, an npz path or
any ``--data`` spec). Nothing is written unless ``out`` is given.

    import kcompress
    result = kcompress.compress(model, "prune", data="my.npz", sparsity=0.8, epochs=2)
    result.model.save("pruned.keras")               # a plain Keras model, no wrappers
    print(result.metrics, result.reference_metrics, result.compression["total"]["bits_ratio"])

This module only composes: settings objects are built from keyword arguments (the same names as
the command-line flags) and handed to :mod:`kcompress.pipeline`, :mod:`kcompress.deploy.check`,
:mod:`kcompress.reporting.summary`, :mod:`kcompress.tuning.search` and :mod:`kcompress.walkthrough`.
"""
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kcompress.core.modeldir import load_model, staged_dir
from kcompress.core.modelspec import ModelSettings
from kcompress.core.settings import Settings, expand, option
from kcompress.core.source import Source, check_inputs, check_safe, file_config, load_model_file, model_kind
from kcompress.errors import require
from kcompress.methods import settings_class
from kcompress.training.config import TrainConfig
from kcompress.tuning.settings import TuneSettings

__all__ = ["Result", "load", "import_model", "train", "evaluate", "compress", "export", "report", "tune", "demo"]


@dataclass
class Result:
    """One compressed model: the plain Keras ``model``, its ``record`` (what ``run.json`` holds) and the
    folder it was written to (``None`` when nothing was written). ``result["key"]`` reads the record."""

    model: object
    record: dict
    folder: Optional[Path] = None

    @property
    def metrics(self):
        """Test (and train) scores of the compressed model."""
        return self.record["metrics"]

    @property
    def reference_metrics(self):
        """The same scores of the reference it was compressed from."""
        return self.record.get("reference_metrics")

    @property
    def compression(self):
        """Parameters, non-zeros, distinct values and storage bits per layer and in total (``["total"]``)."""
        return self.record["compression"]

    def __getitem__(self, key):
        return self.record[key]

    def get(self, key, default=None):
        return self.record.get(key, default)


def _split(settings, *classes):
    """``settings`` divided among ``classes`` by field name (an unknown name: exit 2)."""
    known = set().union(*(c.names() for c in classes))
    unknown = sorted(set(settings) - known)
    require(not unknown, f"unknown setting(s) {', '.join(unknown)}")
    return [c.from_dict({k: v for k, v in settings.items() if k in c.names()}) for c in classes]


def load(path):
    """The plain Keras model in ``path`` (a model directory, a ``.keras``/``.h5`` file or a SavedModel
    folder), loaded in safe mode (no code from the file runs).

    >>> model = kcompress.load("models/p95")"""
    kind = model_kind(path)
    if kind == "dir":
        return load_model(path)
    check_safe(path, file_config(path, kind)[0])
    return load_model_file(path, kind)


def import_model(model, out, data, loss=None, metric=None, overwrite=False):
    """Write a model directory ``out`` from a model file or object, evaluated once on ``data`` as the
    reference of later compressions (which then need no ``data``). Returns its record.

    >>> kcompress.import_model("my.keras", "models/mine", data="my.npz")"""
    Source(loss=loss, metric=metric).validate()
    check_inputs(model, out, overwrite, data)
    from kcompress import pipeline  # loads TensorFlow: only when work needs it

    return pipeline.import_model(model, out, data, loss=loss, metric=metric, overwrite=overwrite).to_dict()


def train(out, seed=0, overwrite=False, strategy="none", **settings):
    """Train a zoo model and write the model directory ``out``; returns its ``run.json`` record.

    ``settings`` are :class:`~kcompress.core.modelspec.ModelSettings` fields (model, data, hidden,
    activation, val_split) and :class:`~kcompress.training.config.TrainConfig` fields (epochs, lr,
    ...). A run killed half-way resumes when the same command runs again; ``strategy`` (none,
    mirrored, multiworker) distributes the training.

    >>> kcompress.train("models/ref", model="lenet300", data="mnist-sample", epochs=30)"""
    setup, cfg = _split(settings, ModelSettings, TrainConfig)  # bad settings: exit 2 before TensorFlow loads
    check_inputs(out=None if strategy == "multiworker" else out, overwrite=overwrite, data=setup.data)
    from kcompress import pipeline  # loads TensorFlow: only when work needs it

    return pipeline.train(out, setup, cfg, seed=seed, overwrite=overwrite, strategy=strategy).to_dict()


def evaluate(model, data=None, loss=None, metric=None):
    """Scores of ``model`` (object, file or model directory) on ``data`` (default: the data a model
    directory was made with).

    >>> kcompress.evaluate("models/p95")["test_error"]"""
    Source(loss=loss, metric=metric).validate()
    check_inputs(model, data=data)
    from kcompress.core.objectives import evaluate_model  # TensorFlow: only when work needs it
    from kcompress.pipeline import load_reference  # likewise

    ref = load_reference(model, data, loss, metric)
    where = str(ref.folder) if ref.folder else f"model {ref.model.name}"
    return {"model": where, "data": ref.data.name, **evaluate_model(ref.model, ref.data)}


def compress(model, method, out=None, overwrite=False, seed=0, data=None, loss=None, metric=None, **settings):
    """Compress ``model`` (a Keras model object, a model file or a model directory) with ``method``
    (prune, cluster, prune+cluster, lc, pruner, alpha, qat; or auto). ``settings`` are the method's settings
    (``kcompress compress --method NAME --help`` lists them with their defaults); a sweepable setting
    given as a list (or a comma string) runs a sweep. ``data``: numpy arrays (``dict(x_train=...,
    y_train=..., x_test=..., y_test=...)``), an npz path or a ``--data`` spec, needed for a bare model;
    ``loss``/``metric`` override what the model implies. ``out``: also write the model directory.

    Returns a :class:`Result` (a list of them for a sweep). ``method="auto"`` searches the methods
    (:class:`~kcompress.tuning.settings.AutoSettings` fields; needs ``out``) and returns its summary.

    >>> result = kcompress.compress("models/ref", "prune", sparsity=0.95)
    >>> result.metrics["test_error"], result.compression["total"]["bits_ratio"]"""
    Source(loss=loss, metric=metric).validate()
    if method == "auto":
        from kcompress.tuning.autosearch import compress_auto  # TensorFlow: only when work needs it

        require(out is not None, "compress --method auto needs out (the search's folder)")
        extra = {k: v for k, v in (("data", data), ("loss", loss), ("metric", metric)) if v is not None}
        return compress_auto(model, out, overwrite=overwrite, seed=seed, **extra, **settings)
    runs = expand(settings_class(method), settings)  # bad settings: exit 2 before TensorFlow loads
    check_inputs(model, out, overwrite, data)
    from kcompress import pipeline  # loads TensorFlow: only when work needs it

    _, done = pipeline.compress(model, runs, out, overwrite=overwrite, seed=seed, data=data, loss=loss, metric=metric)
    folders = [None] * len(done) if out is None else [Path(out) / label if label else Path(out) for label, _ in runs]
    results = [Result(model=m, record=r.to_dict(), folder=f) for (r, m), f in zip(done, folders)]
    return results[0] if len(runs) == 1 else results


def export(model, out, overwrite=False, data=None, metric=None, **options):
    """Convert ``model`` (object, file or model directory) to TFLite/ONNX in ``out`` and verify every
    file against Keras; returns the report (``report["passed"]``). See :mod:`kcompress.deploy.check`.

    >>> kcompress.export("models/p95", "exported/p95", formats="tflite,onnx")["passed"]"""
    check_inputs(model, out, overwrite, data)
    from kcompress import pipeline  # loads TensorFlow: only when work needs it

    return pipeline.export(model, out, overwrite=overwrite, data=data, metric=metric, **options)


def report(paths, out, overwrite=False, files=True):
    """One table and the error-vs-size figures over the model directories in ``paths`` (model,
    sweep or tuning folders) into the folder ``out``; see :mod:`kcompress.reporting.summary`.
    ``files``: also convert each model to every deployable file and give the smallest one's bytes,
    raw and gzip'd, and the int8 file's (measured once per model: :mod:`kcompress.deploy.sizes`).
    Returns the table's rows.

    >>> min(r["deployed_gzip_bytes"] for r in kcompress.report(["models/ref", "models/p95"], "reports/p95"))"""
    from kcompress.reporting.summary import write_report  # matplotlib: only when a report is written

    with staged_dir(out, overwrite) as tmp:
        return write_report(paths, tmp, measure=evaluate, files=_deployed_files if files else None)


def _deployed_files(folder):
    """The deployable files' columns of the model directory ``folder``."""
    from kcompress.deploy.sizes import deployed_columns  # TensorFlow: only when files are measured
    from kcompress.pipeline import load_reference  # likewise

    ref = load_reference(folder)
    return deployed_columns(ref.model, ref.data.x_train, ref.folder)


def tune(out, overwrite=False, from_dir=None, method=None, seed=0, **settings):
    """Hyperparameter search with Keras Tuner into ``out``; see :mod:`kcompress.tuning.search`.

    ``settings``: :class:`~kcompress.tuning.settings.TuneSettings` fields (space, search, objective,
    max_trials, ...) and the fixed settings of every trial (``train``'s, or with ``from_dir`` and ``method``
    the method's and the reference's data, loss and metric).

    >>> kcompress.tune("models/tune", model="lenet300", search="grid", space=["lr=1e-3,1e-2"], epochs=2)"""
    search = TuneSettings.from_dict({k: settings.pop(k) for k in TuneSettings.names() if k in settings})
    from kcompress.tuning.search import tune as run_search  # Keras Tuner: only when a search runs

    return run_search(out, search, overwrite=overwrite, from_dir=from_dir, method=method, seed=seed, **settings)


@dataclasses.dataclass(frozen=True)
class DemoSettings(Settings):
    """Where ``kcompress demo`` writes and how long its reference trains (the flags of ``demo``)."""

    out: str = option("models/demo", "folder for the demo's model directories")
    exported: str = option("exported/demo", "folder for the exported files")
    epochs: int = option(30, "epochs of reference training")

    def check(self):
        require(self.epochs >= 1, f"--epochs must be positive, got {self.epochs}")


def demo(overwrite=True, seed=0, **settings):
    """The whole path on the bundled data (``settings``: :class:`DemoSettings` fields); see
    :mod:`kcompress.walkthrough`.

    >>> kcompress.demo(out="models/demo", epochs=5)"""
    chosen = DemoSettings.from_dict(settings)
    from kcompress.walkthrough import run_demo  # loads TensorFlow: only when work needs it

    return run_demo(chosen, overwrite=overwrite, seed=seed)
