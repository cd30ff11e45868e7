"""The Python API: one function per CLI subcommand, with the same names and settings.

This module only composes: settings objects are built from keyword arguments (the same names as
the command-line flags) and handed to :mod:`kcompress.pipeline` (train, compress),
:mod:`kcompress.export.check`, :mod:`kcompress.report.summary`, :mod:`kcompress.tune.search` and :mod:`kcompress.demo`.

    import kcompress
    kcompress.train("models/ref", model="lenet300", epochs=30)
    kcompress.compress("models/ref", "prune", "models/p95", sparsity=0.95)
    kcompress.export("models/p95", "exported/p95")
    kcompress.api.report(["models/ref", "models/p95"], "reports/p95")  # (kcompress.report is the package)
"""
from kcompress.core.modelspec import ModelSettings
from kcompress.training.config import TrainConfig


def _split(settings, *classes):
    """``settings`` divided among ``classes`` by field name (an unknown name: exit 2)."""
    from kcompress.errors import require

    known = set().union(*(c.names() for c in classes))
    unknown = sorted(set(settings) - known)
    require(not unknown, f"unknown setting(s) {', '.join(unknown)}")
    return [c.from_dict({k: v for k, v in settings.items() if k in c.names()}) for c in classes]


def train(out, seed=0, overwrite=False, strategy="none", **settings):
    """Train a zoo model and write the model directory ``out``; returns its ``run.json`` record.

    ``settings`` are :class:`~kcompress.core.modelspec.ModelSettings` fields (model, data, hidden,
    activation, val_split) and :class:`~kcompress.training.config.TrainConfig` fields (epochs, lr,
    ...). A run killed half-way resumes when the same command runs again; ``strategy`` (none,
    mirrored, multiworker) distributes the training."""
    setup, cfg = _split(settings, ModelSettings, TrainConfig)  # bad settings: exit 2 before TensorFlow loads
    from kcompress import pipeline

    return pipeline.train(out, setup, cfg, seed=seed, overwrite=overwrite, strategy=strategy)


def evaluate(from_dir, data=None):
    """Scores of the model in ``from_dir`` on the data it was made with (or ``data``)."""
    from kcompress.core.objectives import evaluate_model
    from kcompress.pipeline import load_reference

    ref = load_reference(from_dir, data)
    return {"model": str(from_dir), "data": ref.data.name, **evaluate_model(ref.model, ref.data)}


def compress(from_dir, method, out, overwrite=False, seed=0, **settings):
    """Compress the model in ``from_dir`` with ``method`` into ``out``; ``settings`` are the
    method's settings fields (see ``kcompress compress --method NAME --help``). A sweepable
    setting given as a list (or a comma string) runs a sweep. Returns the record(s).

    ``method="auto"`` searches the methods instead (:mod:`kcompress.tune.autosearch`; ``settings``
    are :class:`~kcompress.tune.settings.AutoSettings` fields) and returns the search's summary."""
    if method == "auto":
        from kcompress.tune.autosearch import compress_auto

        return compress_auto(from_dir, out, overwrite=overwrite, seed=seed, **settings)
    from kcompress.core.settings import expand
    from kcompress.methods import settings_class

    runs = expand(settings_class(method), settings)  # bad settings: exit 2 before TensorFlow loads
    from kcompress import pipeline

    return pipeline.compress(from_dir, runs, out, overwrite=overwrite, seed=seed)


def export(from_dir, out, overwrite=False, **options):
    """Convert the model in ``from_dir`` and verify each file; see :mod:`kcompress.export.check`."""
    from kcompress.export.check import export_and_check

    return export_and_check(from_dir, out, overwrite=overwrite, **options)


def report(paths, out, overwrite=False):
    """One table and the error-vs-size figures over the model directories in ``paths`` (model,
    sweep or tuning folders) into the folder ``out``; see :mod:`kcompress.report.summary`.
    Returns the table's rows."""
    from kcompress.core.modeldir import staged_dir
    from kcompress.report.summary import write_report

    with staged_dir(out, overwrite) as tmp:
        return write_report(paths, tmp)


def tune(out, **settings):
    """Hyperparameter search with Keras Tuner; see :mod:`kcompress.tune.search`."""
    from kcompress.tune.search import tune as run_search

    return run_search(out, **settings)


def demo(out="models/demo", exported="exported/demo", overwrite=True, **settings):
    """The whole path on the bundled data; see :mod:`kcompress.demo`."""
    from kcompress.demo import run_demo

    return run_demo(out=out, exported=exported, overwrite=overwrite, **settings)
