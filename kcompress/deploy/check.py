"""The deployment check: convert, run each file in its own runtime, compare with Keras.

For every exported file (TFLite variants in LiteRT, ONNX in onnxruntime) on the whole test
split: max |exported − Keras| output difference, prediction agreement with Keras, the file's
own test metric, file and gzip sizes, and median single-thread latency for one sample and
for a batch. ``float32`` TFLite and ONNX must match Keras within the tolerance, or the
command fails after writing its report; dynamic-range, float16 and int8 files are quantized
by design, so for them the agreement and metric are what to read.
"""
import time
from pathlib import Path

import numpy as np

from kcompress.backend import quiet_stderr
from kcompress.core.modeldir import staged_dir, write_json
from kcompress.core.objectives import predict, predicted_classes, primary_metric, scores
from kcompress.errors import CheckFailed
from kcompress.deploy.convert import gzip_size, to_onnx, to_tflite
from kcompress.reporting.tables import table

STRICT = ("tflite-float32", "tflite-float32-sparse", "onnx")  # exports that must reproduce Keras within tolerance
LATENCY_BATCH = 256


class TFLiteRunner:
    """Runs a TFLite flatbuffer in LiteRT on one thread, quantizing int8 inputs/outputs. LiteRT's
    default XNNPACK delegate refuses int8 kernels in the sparse encoding ("failed to prepare"); such
    a file runs on LiteRT's builtin kernels instead, and ``runtime`` says which ran it."""

    def __init__(self, blob):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType  # a runtime, loaded only to run a file

        self.runtime = "xnnpack"
        try:
            self.interp = self._interpreter(Interpreter, blob)
            with quiet_stderr():  # XNNPACK's notice; its refusal is the RuntimeError
                self.interp.allocate_tensors()
        except RuntimeError:
            self.runtime = "builtin"
            self.interp = self._interpreter(Interpreter, blob, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.batch = None

    @staticmethod
    def _interpreter(cls, blob, resolver=None):
        options = {"experimental_op_resolver_type": resolver} if resolver is not None else {}
        with quiet_stderr():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" notice
            return cls(model_content=blob, num_threads=1, **options)

    def __call__(self, x):
        if self.batch != len(x):
            self.interp.resize_tensor_input(self.inp["index"], (len(x),) + tuple(x.shape[1:]))
            with quiet_stderr():
                self.interp.allocate_tensors()
            self.inp = self.interp.get_input_details()[0]
            self.out = self.interp.get_output_details()[0]
            self.batch = len(x)
        self.interp.set_tensor(self.inp["index"], _quantize(x, self.inp))
        self.interp.invoke()
        return _dequantize(self.interp.get_tensor(self.out["index"]), self.out)


def _quantize(x, detail):
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def _dequantize(y, detail):
    if detail["dtype"] == np.float32:
        return y.copy()
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


class OnnxRunner:
    """Runs ONNX bytes in onnxruntime on one thread."""

    def __init__(self, blob):
        import onnxruntime as ort  # a runtime, loaded only to run a file

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name

    def __call__(self, x):
        return self.session.run(None, {self.name: x.astype(np.float32)})[0]


def median_latency_ms(run, x, repeats=50):
    """Median wall time of ``run(x)`` in milliseconds after two warm-up calls."""
    return interleaved_latency_ms([run], x, repeats)[0]


def interleaved_latency_ms(runs, x, repeats=50, statistic=np.median):
    """Median (or ``statistic``) milliseconds per call of each of ``runs`` on ``x``, the calls
    interleaved across them (so that machine load hits all alike), after two warm-up calls each."""
    for run in runs:
        run(x)
        run(x)
    times = [[] for _ in runs]
    for _ in range(repeats):
        for t, run in zip(times, runs):
            start = time.perf_counter()
            run(x)
            t.append(time.perf_counter() - start)
    return [1000.0 * float(statistic(t)) for t in times]


def agreement(y_file, y_keras, data):
    """Share of test samples on which the file predicts what Keras predicts
    (same class; for regression, the same rounded position)."""
    if data.task == "classification":
        return float(np.mean(predicted_classes(y_file, data) == predicted_classes(y_keras, data)))
    pos = lambda y: np.round(y.reshape(-1) * data.y_scale)  # noqa: E731
    return float(np.mean(pos(y_file) == pos(y_keras)))


def check_file(name, blob, runner, data, y_keras):
    """The report row of one exported file."""
    x = data.x_test
    y = runner(x)
    metric_key = primary_metric(data)
    own = scores(data.y_test, y, data, "test_")
    return {
        "file": name,
        "bytes": len(blob),
        "gzip_bytes": gzip_size(blob),
        "max_abs_diff": float(np.max(np.abs(y.reshape(y_keras.shape) - y_keras))),
        "agreement": agreement(y, y_keras, data),
        "metric": metric_key,
        "value": own.get(metric_key, own.get("test_" + metric_key)),
        "latency_ms": median_latency_ms(runner, x[:1]),
        "batch_latency_ms": median_latency_ms(runner, x[:LATENCY_BATCH], repeats=20),
        "runtime": getattr(runner, "runtime", "onnxruntime"),
    }


def exports(model, data, formats, tflite_modes, opset, seed=0):
    """``[(variant, file name, bytes, runner class)]`` for the requested formats."""
    out = []
    if "tflite" in formats:
        idx = np.random.default_rng(seed).choice(len(data.x_train), min(200, len(data.x_train)), replace=False)
        for mode in tflite_modes:
            blob = to_tflite(model, mode, representative=data.x_train[idx])
            out.append((f"tflite-{mode}", f"model_{mode}.tflite", blob, TFLiteRunner))
    if "onnx" in formats:
        out.append(("onnx", "model.onnx", to_onnx(model, opset), OnnxRunner))
    return out


def export_and_check(ref, out, s, overwrite=False, seed=0):
    """Export the model of ``ref`` (a :class:`~kcompress.methods.base.Reference`: model, data, folder and
    record) to ``out`` as :class:`~kcompress.deploy.settings.ExportSettings` ``s`` say, and verify every
    file on ``ref``'s test split (int8 calibration on its training split); return the report.
    Raises :class:`CheckFailed` (after writing the report) when a float export differs from
    Keras by more than ``tolerance``.
    """
    y_keras = predict(ref.model, ref.data.x_test)
    rows = []
    with staged_dir(out, overwrite) as tmp:
        for variant, filename, blob, runner in exports(ref.model, ref.data, s.formats, s.tflite_modes, s.opset, seed):
            (tmp / filename).write_bytes(blob)
            row = {"variant": variant, **check_file(filename, blob, runner(blob), ref.data, y_keras)}
            row["strict"] = variant in STRICT
            row["passed"] = not row["strict"] or row["max_abs_diff"] <= s.tolerance
            rows.append(row)
        report = {"from": str(ref.folder) if ref.folder else f"model {ref.model.name}", "data": ref.data.name, "n_test": int(len(ref.data.x_test)),
                  "tolerance": s.tolerance, "opset": s.opset, "keras_metric": ref.run.metrics,
                  "files": rows, "passed": all(r["passed"] for r in rows)}
        write_json(tmp / "report.json", report)
        (tmp / "report.md").write_text(format_report(report) + "\n")
    print(format_report(report))
    failed = [r["variant"] for r in rows if not r["passed"]]
    if failed:
        raise CheckFailed(f"{', '.join(failed)} differ from Keras by more than {s.tolerance} (see {Path(out) / 'report.json'})")
    return report


def format_report(report):
    """The report as a markdown table."""
    metric = report["files"][0]["metric"] if report["files"] else "metric"
    rows = [{**r, "agreement_pct": 100 * r["agreement"],
             "check": ("pass" if r["passed"] else "FAIL") if r["strict"] else "quantized"} for r in report["files"]]
    columns = [("file",), ("bytes",), ("gzip_bytes", "gzip bytes"), ("max_abs_diff", "max abs diff", "{:.2e}"),
               ("agreement_pct", "agreement", "{:.2f} %"), ("value", metric, "{:.3f}"),
               ("latency_ms", "latency 1 (ms)", "{:.3f}"), ("batch_latency_ms", f"latency {LATENCY_BATCH} (ms)", "{:.3f}"),
               ("runtime",), ("check",)]
    return table(rows, columns)[0].rstrip("\n")
