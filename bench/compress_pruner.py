"""Pruner masks at real size: error, kept units, parameter ratio, epochs, ONNX latency ratio.

Cases (all on the bundled MNIST sample, default schedule λ 1 → 10⁷ ×10 every 20 epochs,
adaptive μ, λ raised on stall):

- ``lenet``: LeNet-300-100 (models/ref) with --keep 0.35 → 105 and 35 hidden units;
- ``markov``: the same with the Markov-chain gate optimizer, next to the gradient one;
- ``wide``: a 784-1200-1200-10 network (models/pruner-wideref, trained here if missing) with
  --keep 0.35 → 420 and 420 units: the "flat valley" case of the seed reports.

Latency: onnxruntime, one thread (intra and inter op), the same input batch for the
compressed model and its reference, median over repeats, alternating the two models.
Writes bench/results/compress_pruner.{json,md}.
Usage: python bench/compress_pruner.py [--cases lenet,markov,wide] [--batch 1000]
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

import kcompress  # noqa: F401
from kcompress import api
from kcompress.deploy.check import OnnxRunner, interleaved_latency_ms
from kcompress.deploy.convert import to_onnx
from kcompress.core.modeldir import load_model
from kcompress.pipeline import load_reference

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "lenet": ("models/ref", "models/pruner-k35", dict(keep=0.35)),
    "markov": ("models/ref", "models/pruner-k35-markov", dict(keep=0.35, pruner_optimizer="markov")),
    "wide": ("models/pruner-wideref", "models/pruner-wide-k35", dict(keep=0.35)),
}


def latency_ratio(ref_model, model, x, repeats=30):
    """(reference ms, compressed ms, ratio) of median single-thread ONNX latency on batch ``x``."""
    ref_ms, ms = interleaved_latency_ms([OnnxRunner(to_onnx(m)) for m in (ref_model, model)], x, repeats)
    return ref_ms, ms, ref_ms / ms


def ensure_wide_reference(folder):
    if not (ROOT / folder / "model.keras").exists():
        api.train(ROOT / folder, model="lenet300", hidden="1200,1200", epochs=10, seed=0, verbose=2)


def run_case(name, batch):
    ref_dir, out, settings = CASES[name]
    if name == "wide":
        ensure_wide_reference(ref_dir)
    start = time.perf_counter()
    record = api.compress(ROOT / ref_dir, "pruner", ROOT / out, overwrite=True, seed=0, **settings)
    seconds = time.perf_counter() - start
    ref_model, model = load_model(ROOT / ref_dir), load_model(ROOT / out)
    x = load_reference(ROOT / ref_dir).data.x_test[:batch].astype(np.float32)
    ref_ms, ms, ratio = latency_ratio(ref_model, model, x)
    ms1_ref, ms1, ratio1 = latency_ratio(ref_model, model, x[:1], repeats=300)
    m = record["method"]
    return {
        "case": name, "reference": ref_dir, "out": out, "settings": settings,
        "test_error": record["metrics"]["test_error"],
        "reference_test_error": record["reference_metrics"]["test_error"],
        "units": m["units"], "targets": m["targets"], "open_at_end": m["open_at_end"],
        "params": model.count_params(), "reference_params": ref_model.count_params(),
        "param_ratio": ref_model.count_params() / model.count_params(),
        "bits_ratio": record["compression"]["total"]["bits_ratio"],
        "gate_epochs": m["gate_epochs"], "converged": m["converged"], "lambda_raises": m["lambda_raises"],
        "final_lambda": m["final_lambda"], "gate_seconds": m["gate_seconds"], "total_seconds": seconds,
        f"onnx_ms_batch{batch}": ms, f"reference_onnx_ms_batch{batch}": ref_ms, "onnx_speedup": ratio,
        "onnx_ms_batch1": ms1, "reference_onnx_ms_batch1": ms1_ref, "onnx_speedup_batch1": ratio1,
    }


def markdown(rows, batch):
    head = ("case", "test error % (ref)", "kept units", "param ratio", "gate epochs", "converged",
            f"ONNX speed-up (batch {batch})", "ONNX speed-up (batch 1)", "seconds")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        units = ", ".join(f"{k} {v['before']}→{v['after']}" for k, v in r["units"].items())
        lines.append(f"| {r['case']} | {r['test_error']:.2f} ({r['reference_test_error']:.2f}) | {units} | "
                     f"{r['param_ratio']:.2f}x | {r['gate_epochs']} | {r['converged']} | {r['onnx_speedup']:.2f}x | "
                     f"{r['onnx_speedup_batch1']:.2f}x | {r['total_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="lenet,markov,wide", help=f"comma list of {', '.join(CASES)}")
    p.add_argument("--batch", type=int, default=1000, help="ONNX latency batch (test samples)")
    args = p.parse_args()
    rows = [run_case(name, args.batch) for name in args.cases.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compress_pruner.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = markdown(rows, args.batch)
    (RESULTS / "compress_pruner.md").write_text("# Pruner masks (bench/compress_pruner.py)\n\n" + table)
    print("\n" + table)


if __name__ == "__main__":
    main()
