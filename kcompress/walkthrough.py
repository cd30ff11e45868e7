"""The demo: the whole path on the bundled MNIST sample, in a few minutes on 2 cores.

Trains LeNet-300-100, compresses it with a short setting of several methods, exports every
model to TFLite and ONNX with the deployment check, and prints one summary table: error,
storage-bit ratio, gzip'd TFLite size and ONNX latency, next to the reference. It ends with a
short ``compress --method auto`` search (:data:`DEMO_AUTO`: three trials of short settings).
"""
from pathlib import Path

from kcompress import pipeline
from kcompress.core.modelspec import ModelSettings
from kcompress.core.record import RunRecord
from kcompress.core.settings import expand
from kcompress.methods import settings_class
from kcompress.reporting.tables import write_table
from kcompress.training.config import TrainConfig
from kcompress.tuning.autosearch import compress_auto

# (label, method, settings): short settings that show each method without taking long.
DEMO_STEPS = (
    ("pruned-90", "prune", {"sparsity": 0.9, "epochs": 6}),
    ("pruned-90-clustered-8", "prune+cluster", {"sparsity": 0.9, "clusters": 8, "epochs": 4, "cluster_epochs": 4}),
    ("lc-keep-5pc", "lc", {"task": ["all:prune-l0:kappa=0.05"], "mu0": 1e-3, "mu_factor": 1.5, "mu_steps": 8,
                           "l_epochs": 2}),
)

# the closing auto search: few trials, short fine-tuning, a one-point budget on validation error
DEMO_AUTO = {"objective": "bits", "max_error_increase": 1.0, "methods": "prune+cluster,cluster", "search": "random",
             "max_trials": 3, "space": ["prune+cluster.epochs=4", "prune+cluster.cluster_epochs=2",
                                        "cluster.epochs=2"]}


def run_demo(settings, overwrite=True, seed=0, steps=DEMO_STEPS, auto=DEMO_AUTO):
    """Run the demo (``settings``: :class:`~kcompress.api.DemoSettings`) into its ``out`` (model
    directories) and ``exported`` (files, reports); ``auto``: the settings of the closing auto search
    (into ``out/auto``)."""
    out, exported, epochs = Path(settings.out), Path(settings.exported), settings.epochs
    print(f"== 1. train LeNet-300-100 on the bundled MNIST sample ({epochs} epochs)")
    pipeline.train(out / "reference", ModelSettings(), TrainConfig(epochs=epochs), seed=seed, overwrite=overwrite)
    models = {"reference": out / "reference"}
    for i, (label, method, settings) in enumerate(steps, start=2):
        print(f"\n== {i}. compress: {label}")
        runs = expand(settings_class(method), settings)
        pipeline.compress(models["reference"], runs, out / label, overwrite=overwrite, seed=seed)
        models[label] = out / label
    print("\n== export and check every model (LiteRT and onnxruntime, full test set)")
    reports = {label: pipeline.export(path, exported / label, overwrite=overwrite, seed=seed,
                                      formats=("tflite", "onnx"), tflite_modes=("float32", "int8"))
               for label, path in models.items()}
    table = write_table(out / "summary", summary_rows(models, reports), SUMMARY_COLUMNS)
    print("\n" + table)
    print(f"\n== {len(steps) + 2}. compress --method auto: {auto['max_trials']} trials for the fewest "
          f"{auto['objective']} within +{auto['max_error_increase']} pp of validation error")
    compress_auto(models["reference"], out / "auto", overwrite=overwrite, seed=seed, **auto)
    return table


SUMMARY_COLUMNS = [("model",), ("test_error", "test error %", "{:.2f}"), ("bits_ratio", "bits ratio", "{:.1f}x"),
                   ("tflite_kib", "TFLite gzip KiB", "{:.1f}"), ("int8_kib", "int8 TFLite gzip KiB", "{:.1f}"),
                   ("onnx_ms", "ONNX latency 256 (ms)", "{:.3f}"), ("check", "export check")]


def summary_rows(models, reports):
    """One row per model: its metric, bit ratio, file sizes, latency and check."""
    rows = []
    for label, path in models.items():
        run, files = RunRecord.read(path), {r["variant"]: r for r in reports[label]["files"]}
        rows.append({"model": label, "test_error": run.metric("test_error"),
                     "bits_ratio": run.total_compression["bits_ratio"],
                     "tflite_kib": files["tflite-float32"]["gzip_bytes"] / 1024,
                     "int8_kib": files["tflite-int8"]["gzip_bytes"] / 1024,
                     "onnx_ms": files["onnx"]["batch_latency_ms"],
                     "check": "pass" if reports[label]["passed"] else "FAIL"})
    return rows
