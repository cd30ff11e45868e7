"""The demo: the whole path on the bundled MNIST sample, in a few minutes on 2 cores.

Trains LeNet-300-100, compresses it with each registered method's demo setting, exports
every model to TFLite and ONNX with the deployment check, and prints one summary table:
error, storage-bit ratio, gzip'd TFLite size and ONNX latency, next to the reference.
"""
from pathlib import Path

from kcompress import api
from kcompress.methods import REGISTRY

# (label, method, settings): short settings that show each method without taking long.
DEMO_STEPS = (
    ("pruned-90", "prune", {"sparsity": 0.9, "epochs": 6}),
    ("pruned-90-clustered-8", "prune+cluster", {"sparsity": 0.9, "clusters": 8, "epochs": 4}),
    ("lc-keep-5pc", "lc", {"task": ["all:prune-l0:kappa=0.05"], "mu0": 1e-3, "mu_factor": 1.5, "mu_steps": 8,
                           "l_epochs": 2}),
)


def run_demo(out="models/demo", exported="exported/demo", overwrite=True, epochs=30, seed=0):
    """Run the demo into ``out`` (model directories) and ``exported`` (files, reports)."""
    out, exported = Path(out), Path(exported)
    print(f"== 1. train LeNet-300-100 on the bundled MNIST sample ({epochs} epochs)")
    api.train(out / "reference", model="lenet300", data="mnist-sample", epochs=epochs, seed=seed, overwrite=overwrite)
    models = {"reference": out / "reference"}
    for i, (label, method, settings) in enumerate(_steps(), start=2):
        print(f"\n== {i}. compress: {label}")
        api.compress(models["reference"], method, out / label, overwrite=overwrite, seed=seed, **settings)
        models[label] = out / label
    print("\n== export and check every model (LiteRT and onnxruntime, full test set)")
    reports = {label: api.export(path, exported / label, formats=("tflite", "onnx"), tflite_modes=("float32", "int8"),
                                 overwrite=overwrite, seed=seed) for label, path in models.items()}
    table = summary(models, reports)
    print("\n" + table)
    (out / "summary.md").write_text(table + "\n")
    return table


def _steps():
    return [step for step in DEMO_STEPS if step[1] in REGISTRY]


def summary(models, reports):
    """One markdown row per model: its metric, bit ratio, file sizes, latency and check."""
    from kcompress.modeldir import read_run

    lines = ["| model | test error % | bits ratio | TFLite gzip KiB | int8 TFLite gzip KiB | ONNX latency 256 (ms) | export check |",
             "|---|---|---|---|---|---|---|"]
    for label, path in models.items():
        run, files = read_run(path), {r["variant"]: r for r in reports[label]["files"]}
        ratio = run.get("compression", {}).get("total", {}).get("bits_ratio", 1.0)
        lines.append(
            f"| {label} | {run['metrics']['test_error']:.2f} | {ratio:.1f}x | "
            f"{files['tflite-float32']['gzip_bytes'] / 1024:.1f} | {files['tflite-int8']['gzip_bytes'] / 1024:.1f} | "
            f"{files['onnx']['batch_latency_ms']:.3f} | {'pass' if reports[label]['passed'] else 'FAIL'} |"
        )
    return "\n".join(lines)
