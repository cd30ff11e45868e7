"""Benchmark of the tfmot methods: pruning, weight sharing and both, at real size.

LeNet-300-100 reference ``models/ref`` (30 epochs, seed 0, bundled MNIST sample) with each
method's default fine-tuning recipe, swept as the issue asks; then the same pruning and
cluster sweeps on the learned-index reference ``models/tfmot-index`` (index64, LSE, trained
on keys:lognormal:100000) for the ε table. Every sweep writes one model per setting plus
sweep.md/csv/png under ``models/tfmot-bench/``; the "Done when" targets are checked against
the reference's test error and written with all numbers to bench/results/compress_tfmot.*.
The two headline models are exported with ``export`` (the deployment check).

    python bench/compress_tfmot.py [--parts lenet,index] [--index-epochs 6]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import kcompress  # noqa: F401
from kcompress import api
from kcompress.core.modeldir import read_run

REFERENCE = Path("models/ref")
INDEX_REFERENCE = Path("models/tfmot-index")
OUT = Path("models/tfmot-bench")
EXPORTED = Path("exported/tfmot-bench")
RESULTS = Path("bench/results")

LENET_SWEEPS = {  # name: (method, settings)
    "prune": ("prune", {"sparsity": "0.5,0.8,0.9,0.95,0.99"}),
    "cluster": ("cluster", {"clusters": "2,4,8,16"}),
    "prune+cluster": ("prune+cluster", {"sparsity": "0.9,0.95", "clusters": "4,8"}),
}
# (label, sweep, setting label, target: pp over the reference error, extra checks)
TARGETS = [
    ("prune 95 %", "prune", "sparsity0.95", 1.0, {}),
    ("prune 90 %", "prune", "sparsity0.9", 0.5, {}),
    ("cluster K=16", "cluster", "clusters16", 0.3, {}),
    ("cluster K=4", "cluster", "clusters4", 1.0, {}),
    ("prune 95 % + cluster K=4", "prune+cluster", "sparsity0.95-clusters4", 1.2, {"bits_ratio": 40, "gzip_ratio": 15}),
]


def sweep(reference, name, method, settings):
    """Run one sweep into OUT/<name>; return its records and wall time."""
    start = time.perf_counter()
    records = api.compress(reference, method, OUT / name, overwrite=True, seed=0, **settings)
    return records, time.perf_counter() - start


def row(record, metric):
    t = record["compression"]["total"]
    return {"setting": record["label"], metric: record["metrics"][metric], "bits_ratio": t["bits_ratio"],
            "tflite_gzip_bytes": t["tflite_gzip_bytes"], "reference_tflite_gzip_bytes": t["reference_tflite_gzip_bytes"],
            "gzip_ratio": t["reference_tflite_gzip_bytes"] / t["tflite_gzip_bytes"],
            "compress_seconds": record["compress_seconds"]}


def check_targets(rows, ref_error):
    """Each "Done when" target: measured numbers and whether it is met."""
    out = []
    for label, name, setting, pp, extra in TARGETS:
        r = next((r for r in rows.get(name, []) if r["setting"] == setting), None)
        if r is None:
            continue
        met = r["test_error"] <= ref_error + pp and all(r[k] >= v for k, v in extra.items())
        out.append({"target": label, "test_error": r["test_error"], "delta_pp": r["test_error"] - ref_error,
                    "allowed_pp": pp, "bits_ratio": r["bits_ratio"], "gzip_ratio": r["gzip_ratio"],
                    "needs": extra, "met": met})
    return out


def export_check(name, setting):
    """Run the deployment check on one swept model; (passed, report)."""
    report = api.export(OUT / name / setting, EXPORTED / f"{name}-{setting}", overwrite=True)
    return {"model": f"{name}/{setting}", "passed": report["passed"],
            "files": [{k: f.get(k) for k in ("variant", "bytes", "gzip_bytes", "max_abs_diff", "agreement", "metric")}
                      for f in report["files"]]}


def markdown(result):
    lines = ["# tfmot pruning, weight sharing, prune+cluster (bench/compress_tfmot.py)", ""]
    for part, info in result["parts"].items():
        metric = info["metric"]
        lines += [f"## {part}: reference {info['reference']} ({metric} {info['reference_value']:.3f})", ""]
        for name, rows in info["sweeps"].items():
            lines += [f"### {name} (fine-tuning: {info['seconds'][name]:.0f} s for the sweep)", "",
                      f"| setting | {metric} | bits ratio | TFLite gzip bytes | gzip ratio |", "|---|---|---|---|---|"]
            lines += [f"| {r['setting']} | {r[metric]:.3f} | {r['bits_ratio']:.1f} | {r['tflite_gzip_bytes']} | "
                      f"{r['gzip_ratio']:.1f} |" for r in rows]
            lines.append("")
    if result.get("targets"):
        lines += ["## Done-when targets (reference test error %.2f %%)" % result["parts"]["lenet"]["reference_value"], "",
                  "| target | test error % | Δ pp | allowed pp | bits ratio | gzip ratio | met |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {t['target']} | {t['test_error']:.2f} | {t['delta_pp']:+.2f} | {t['allowed_pp']} | "
                  f"{t['bits_ratio']:.1f} | {t['gzip_ratio']:.1f} | {'yes' if t['met'] else 'NO'} |" for t in result["targets"]]
        lines.append("")
    for e in result.get("exports", []):
        lines.append(f"- export check of {e['model']}: {'passed' if e['passed'] else 'FAILED'}")
    return "\n".join(lines) + "\n"


def run_part(reference, sweeps, metric, extra_settings=None):
    info = {"reference": str(reference), "metric": metric, "reference_value": read_run(reference)["metrics"][metric],
            "sweeps": {}, "seconds": {}}
    for name, (method, settings) in sweeps.items():
        records, seconds = sweep(reference, name if reference == REFERENCE else f"index-{name}", method,
                                 {**settings, **(extra_settings or {})})
        info["sweeps"][name] = [row(r, metric) for r in records]
        info["seconds"][name] = seconds
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="lenet,index", help="lenet, index or both")
    p.add_argument("--index-epochs", type=int, default=6, help="fine-tuning epochs per index setting (kept short)")
    args = p.parse_args(argv)
    parts = args.parts.split(",")
    result = {"parts": {}}
    if "lenet" in parts:
        result["parts"]["lenet"] = run_part(REFERENCE, LENET_SWEEPS, "test_error")
        result["targets"] = check_targets(result["parts"]["lenet"]["sweeps"], result["parts"]["lenet"]["reference_value"])
        result["exports"] = [export_check("prune", "sparsity0.95"),
                             export_check("prune+cluster", "sparsity0.95-clusters4")]
    if "index" in parts:
        index_sweeps = {k: LENET_SWEEPS[k] for k in ("prune", "cluster")}
        result["parts"]["index"] = run_part(INDEX_REFERENCE, index_sweeps, "max_error",
                                            {"epochs": args.index_epochs, "batch_size": 256})
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if len(parts) == 2 else f"_{parts[0]}"
    (RESULTS / f"compress_tfmot{suffix}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"compress_tfmot{suffix}.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if all(t["met"] for t in result.get("targets", [])) else 1


if __name__ == "__main__":
    sys.exit(main())
