"""Benchmark of the α-schedule at real size: error, parameter ratio and deployed latency.

For every reference (default: LeNet-300-100 in models/ref and the conv net in
models/alpha-convref) and every target mode (labels, teacher) it runs
``compress --method alpha --prune 0.65`` on the bundled MNIST sample (or reuses an existing
result with ``--reuse``), then measures the test error, the share of the prunable
parameters kept, and the single-thread latency of the float ONNX (onnxruntime) and TFLite
(LiteRT) files of the result against the reference's, on the same batch, alternating the
two models so that both see the same machine load. Results: bench/results/compress_alpha.{json,md}.

    python bench/compress_alpha.py                       # short schedule (see --help)
    python bench/compress_alpha.py --reuse --targets labels
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kcompress import api  # noqa: E402
from kcompress.deploy.check import OnnxRunner, TFLiteRunner, interleaved_latency_ms  # noqa: E402
from kcompress.deploy.convert import to_onnx, to_tflite  # noqa: E402
from kcompress.core.modeldir import load_model, read_run  # noqa: E402
from kcompress.pipeline import load_reference  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def latency(ref_model, model, x, repeats):
    """Median ms of reference and result in ONNX and LiteRT, with the ONNX parity vs Keras."""
    keras_out = model.predict(x, verbose=0)
    onnx_ref, onnx_new = OnnxRunner(to_onnx(ref_model)), OnnxRunner(to_onnx(model))
    lite_ref, lite_new = TFLiteRunner(to_tflite(ref_model)), TFLiteRunner(to_tflite(model))
    o_ref, o_new = interleaved_latency_ms([onnx_ref, onnx_new], x, repeats)
    l_ref, l_new = interleaved_latency_ms([lite_ref, lite_new], x, repeats)
    return {
        "onnx_ms_reference": o_ref, "onnx_ms": o_new, "onnx_speedup": o_ref / o_new,
        "litert_ms_reference": l_ref, "litert_ms": l_new, "litert_speedup": l_ref / l_new,
        "onnx_max_abs_diff": float(np.abs(onnx_new(x) - keras_out).max()),
        "litert_max_abs_diff": float(np.abs(lite_new(x) - keras_out).max()),
    }


def one(ref_dir, target, args):
    out = Path(f"{args.out_prefix}-{Path(ref_dir).name}-{target}")
    settings = dict(prune=args.prune, target=target, alpha_schedule="geometric", alpha_decay=args.alpha_decay,
                    alpha_min=args.alpha_min, epochs_per_alpha=args.epochs_per_alpha, epochs=args.epochs)
    if not (args.reuse and out.is_dir()):
        api.compress(ref_dir, "alpha", out, overwrite=True, seed=args.seed, **settings)
    run, ref_run = read_run(out), read_run(ref_dir)
    ref = load_reference(ref_dir)
    model = load_model(out)
    x = ref.data.x_test[: args.batch].astype(np.float32)
    m = run["method"]
    row = {
        "reference": str(ref_dir), "target": target, "result": str(out), "settings": run["settings"],
        "test_error": run["metrics"]["test_error"], "reference_test_error": ref_run["metrics"]["test_error"],
        "prunable_kept_share": m["kept_share"], "layers": sorted(m["branches"]),
        "params": model.count_params(), "reference_params": ref.model.count_params(),
        "compress_seconds": run.get("compress_seconds"), "epochs": len(run["history"].get("loss", [])),
        "batch": int(args.batch),
        **latency(ref.model, model, x, args.repeats),
    }
    row["error_delta_pp"] = row["test_error"] - row["reference_test_error"]
    row["all_dense_conv_kept_share"] = kept_share_all(model, ref.model)
    return row


def kept_share_all(model, reference):
    """Parameters of all Dense/Conv2D layers of ``model`` over the reference's (branches included)."""
    def count(m):
        return sum(l.count_params() for l in m.layers if type(l).__name__ in ("Dense", "Conv2D"))
    return count(model) / count(reference)


def write(rows):
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compress_alpha.json").write_text(json.dumps(rows, indent=2) + "\n")
    head = ("reference", "target", "test error % (ref)", "Δ pp", "Dense/Conv params kept", "ONNX ms ref → new (×)",
            "LiteRT ms ref → new (×)", "epochs", "seconds")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(
            f"| {r['reference']} | {r['target']} | {r['test_error']:.2f} ({r['reference_test_error']:.2f}) | "
            f"{r['error_delta_pp']:+.2f} | {100 * r['all_dense_conv_kept_share']:.1f} % | "
            f"{r['onnx_ms_reference']:.2f} → {r['onnx_ms']:.2f} ({r['onnx_speedup']:.2f}×) | "
            f"{r['litert_ms_reference']:.2f} → {r['litert_ms']:.2f} ({r['litert_speedup']:.2f}×) | "
            f"{r['epochs']} | {r['compress_seconds'] or 0:.0f} |")
    batch = rows[0]["batch"] if rows else 0
    lines.append(f"\nSingle thread, batch {batch} of test images, median of interleaved runs; prune 0.65.")
    (RESULTS / "compress_alpha.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refs", default="models/ref,models/alpha-convref", help="reference model directories")
    p.add_argument("--targets", default="labels,teacher", help="target modes to run")
    p.add_argument("--out-prefix", default="models/alpha-bench", help="result directories: PREFIX-REFNAME-TARGET")
    p.add_argument("--reuse", action="store_true", help="measure existing result directories instead of recomputing")
    p.add_argument("--prune", type=float, default=0.65)
    p.add_argument("--alpha-decay", type=float, default=0.3, help="short schedule: 12 α values (0.7^k, the geometric schedule the results were measured with) "
                                                                       "down to 0.01, then 0")
    p.add_argument("--alpha-min", type=float, default=0.01)
    p.add_argument("--epochs-per-alpha", type=int, default=10)
    p.add_argument("--epochs", type=int, default=60, help="most epochs at α = 0")
    p.add_argument("--batch", type=int, default=256, help="batch of test images per timed call")
    p.add_argument("--repeats", type=int, default=100, help="timed calls per model and format")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rows = [one(ref, t, args) for ref in args.refs.split(",") for t in args.targets.split(",")]
    write(rows)


if __name__ == "__main__":
    main()
