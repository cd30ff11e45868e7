"""The files one ships: each method and chain on LeNet-300-100, every deployable format measured and run.

Each row is a chain of ``kcompress compress`` stages from the reference (default models/ref: LeNet-300-100,
``train --epochs 30 --seed 0`` on the bundled MNIST sample), then ``kcompress export`` of its last model in
every TFLite variant and ONNX, each file run in its runtime on the whole test split (10,000 images). Writes
``bench/results/deployed_files.md`` / ``.json``: per row the test error, the storage-bit ratio and, per
format, raw bytes, gzip'd bytes and the file's own test error, and the smallest file against the reference's
float32 TFLite (gzip'd). A stage whose folder already holds a model is reused (``--work`` keeps them).

    python bench/deployed_files.py [--reference models/ref] [--work models/deployed] [--rows lc1,lc1c16]
"""
import argparse
import json
import sys
from pathlib import Path

from kcompress import api

RESULTS = Path(__file__).parent / "results"
# row: the stages, each (folder name, method, settings), every one from the one before
LC1 = ("lc1", "lc", {"task": ["all:prune-l0:kappa=0.01"], "lr": 0.05})
LC2 = ("lc2", "lc", {"task": ["all:prune-l0:kappa=0.02"], "lr": 0.05})
ROWS = {
    "p95": [("p95", "prune", {"sparsity": 0.95})],
    "pc95k4": [("pc95k4", "prune+cluster", {"sparsity": 0.95, "clusters": 4})],
    "p95qat": [("p95", "prune", {"sparsity": 0.95}), ("p95qat", "qat", {})],
    "lc1": [LC1],
    "lc1c16": [LC1, ("lc1c16", "cluster", {"clusters": 16})],
    "lc1c8": [LC1, ("lc1c8", "cluster", {"clusters": 8})],
    "lc1qat": [LC1, ("lc1qat", "qat", {})],
    "lc2c16": [LC2, ("lc2c16", "cluster", {"clusters": 16})],
}


def run_row(reference, work, stages):
    """The last stage's folder, compressing where a stage's folder holds no model yet."""
    source = reference
    for name, method, settings in stages:
        out = work / name
        if not (out / "run.json").is_file():
            api.compress(source, method, out, overwrite=True, **settings)
        source = out
    return source


def measure(reference, work, name, stages):
    folder = run_row(reference, work, stages)
    record = json.loads((folder / "run.json").read_text())
    report = api.export(folder, work / f"{name}-exported", overwrite=True)
    files = {r["variant"]: {k: r[k] for k in ("bytes", "gzip_bytes", "value", "agreement", "runtime")}
             for r in report["files"]}
    return {"row": name, "chain": " > ".join(f"{m} {s}" for _, m, s in stages),
            "test_error": record["metrics"]["test_error"], "bits_ratio": record["compression"]["total"]["root_bits_ratio"],
            "files": files}


def markdown(rows, ref):
    variants = list(rows[0]["files"])
    head = ["row", "test error %", "bits ratio", *(f"{v} raw / gzip B (err %)" for v in variants),
            "smallest gzip", "x smaller than ref float32 gzip"]
    lines = [f"# Deployed files: LeNet-300-100, reference test error {ref['test_error']:.2f} %, float32 TFLite "
             f"{ref['tflite_bytes']:,} B raw, {ref['tflite_gzip_bytes']:,} B gzip'd", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        best = min(r["files"], key=lambda v: r["files"][v]["gzip_bytes"])
        cells = [r["row"], f"{r['test_error']:.2f}", f"{r['bits_ratio']:.1f}x"]
        cells += [f"{f['bytes']:,} / {f['gzip_bytes']:,} ({f['value']:.2f})" for f in r["files"].values()]
        cells += [f"{best} {r['files'][best]['gzip_bytes']:,} B ({r['files'][best]['value']:.2f} %)",
                  f"{ref['tflite_gzip_bytes'] / r['files'][best]['gzip_bytes']:.1f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Chains: " + "; ".join(f"{r['row']} = {r['chain']}" for r in rows)]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, default=Path("models/ref"))
    p.add_argument("--work", type=Path, default=Path("models/deployed"))
    p.add_argument("--rows", default=",".join(ROWS))
    args = p.parse_args(argv)
    ref_record = json.loads((args.reference / "run.json").read_text())
    ref = {"test_error": ref_record["metrics"]["test_error"], **ref_record["tflite"]}
    rows = [measure(args.reference, args.work, name, ROWS[name]) for name in args.rows.split(",")]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deployed_files.json").write_text(json.dumps({"reference": ref, "rows": rows}, indent=1) + "\n")
    text = markdown(rows, ref)
    (RESULTS / "deployed_files.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
