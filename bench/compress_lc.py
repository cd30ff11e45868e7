"""Benchmark of the LC method: the six rows of issue 4 at real size.

LeNet-300-100 reference (models/ref: 30 epochs, seed 0, bundled MNIST sample), full μ
schedule (9e-5·1.1^k, 40 steps). For every row: LC's test error, its direct-compression
(DC) baseline, the storage-bit ratio (DESIGN §7 as counted on the saved model, and as LC
stores Θ), and the wall time, compared with the time a reference training run takes for the
same number of epochs (measured here, under the same machine load).

    python bench/compress_lc.py [--l-epochs 4] [--mu-steps 40] [--rows 1,2,3,4,5,6] [--merge]

(``--rows 3 --l-epochs 10 --merge`` re-runs one row with longer L-steps and keeps the others.)

Writes bench/results/compress_lc.{json,md,csv,png} and model dirs models/lc-bench-<row>.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import kcompress  # noqa: F401
from kcompress import api
from kcompress.report import plots
from kcompress.methods.lc.settings import LCSettings
from kcompress.report.tables import table
from kcompress.core.modeldir import read_run

# row: (name, tasks, within 1 pp required, L-step settings other than the defaults)
ROWS = {
    1: ("keep 5 % of all weights (L0)", ["all:prune-l0:kappa=0.05"], True),
    2: ("keep 1 % of all weights (L0)", ["all:prune-l0:kappa=0.01"], False),
    # 1-bit weights need the L-steps to move further per μ step: at the reference's rate (0.05)
    # ‖w − Δ(Θ)‖ stays ≈ 7–10 and Δ(Θ) ends at 7.2–7.8 % test error; twice the rate reaches it
    3: ("k=2 codebook per layer", ["each:quant:k=2"], True, {"lr": 0.1}),
    4: ("k=4 codebook per layer", ["each:quant:k=4"], False),
    5: ("1 % pruning + one k=2 codebook, additive", ["all:quant:k=2+prune-l0:kappa=0.01"], True),
    6: ("dense_1 5000 weights, dense_2 rank 10, dense_3 k=2",
        ["dense_1:prune-l0:kappa=5000", "dense_2:lowrank:rank=10", "dense_3:quant:k=2"], False),
}
REFERENCE = Path("models/ref")
RESULTS = Path("bench/results")
COLUMNS = [("row", "row", "{}"), ("name", "compression", "{}"), ("lr", "L-step lr₀", "{}"), ("test_error", "LC test error %", "{:.2f}"),
           ("dc_test_error", "DC test error %", "{:.2f}"), ("beats_dc", "LC < DC", "{}"),
           ("within_1pp", "≤ ref + 1 pp", "{}"), ("bits_ratio", "bits ratio (saved model)", "{:.1f}"),
           ("lc_bits_ratio", "bits ratio (LC Θ)", "{:.1f}"), ("tflite_gzip_kib", "TFLite gzip KiB", "{:.1f}"),
           ("epochs", "epochs", "{}"), ("lc_seconds", "LC s", "{:.0f}"), ("reference_seconds", "ref s", "{:.0f}"),
           ("time_ratio", "LC time / ref time", "{:.2f}")]


def reference_seconds(epochs):
    """Wall time of training the reference (same settings) for ``epochs`` epochs, measured now."""
    settings = {**read_run(REFERENCE)["settings"], "epochs": epochs, "verbose": 0}
    with tempfile.TemporaryDirectory() as tmp:
        return api.train(Path(tmp) / "ref", seed=0, **settings)["train_seconds"]


def run_row(row, l_epochs, mu_steps):
    name, tasks, gated, settings = (*ROWS[row], {})[:4]
    start = time.perf_counter()
    rec = api.compress(REFERENCE, "lc", f"models/lc-bench-{row}", overwrite=True, task=tasks, l_epochs=l_epochs,
                       mu_steps=mu_steps, **settings)
    seconds = time.perf_counter() - start
    lc, total = rec["method"], rec["compression"]["total"]
    return {"row": row, "name": name, "tasks": tasks, "gated": gated, "lr": rec["method"]["schedule"]["lr0"],
            "test_error": rec["metrics"]["test_error"],
            "dc_test_error": lc["dc"]["test_error"], "bits_ratio": total["bits_ratio"],
            "lc_bits_ratio": lc["storage"]["bits_ratio"], "tflite_gzip_kib": total["tflite_gzip_bytes"] / 1024,
            "seconds": seconds, "lc_seconds": rec["compress_seconds"], "epochs": l_epochs * mu_steps,
            "final_distance": lc["steps"][-1]["distance"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--l-epochs", type=int, default=LCSettings.l_epochs)
    p.add_argument("--mu-steps", type=int, default=LCSettings.mu_steps)
    p.add_argument("--rows", default="1,2,3,4,5,6")
    p.add_argument("--merge", action="store_true", help="keep the other rows of an earlier bench/results/compress_lc.json")
    args = p.parse_args(argv)
    ref_error = json.loads((REFERENCE / "run.json").read_text())["metrics"]["test_error"]
    epochs = args.l_epochs * args.mu_steps
    ref_seconds = reference_seconds(epochs)
    print(f"reference training, {epochs} epochs: {ref_seconds:.1f} s (reference test error {ref_error:.2f} %)")
    results = RESULTS / "compress_lc.json"
    earlier = json.loads(results.read_text()) if args.merge and results.exists() else {"rows": []}
    rows = {r["row"]: {"reference_seconds": earlier.get("reference_seconds"), **r} for r in earlier["rows"]}
    for row in (int(r) for r in args.rows.split(",")):
        r = run_row(row, args.l_epochs, args.mu_steps)
        r.update(beats_dc=r["test_error"] < r["dc_test_error"], reference_seconds=ref_seconds,
                 time_ratio=r["lc_seconds"] / ref_seconds, within_1pp=(r["test_error"] <= ref_error + 1) if r["gated"] else None)
        rows[row] = r
        print(json.dumps({k: v for k, v in r.items() if k != "tasks"}))
    write_results([rows[k] for k in sorted(rows)], ref_error)
    return 0


def write_results(rows, ref_error):
    """The table (markdown, CSV), the JSON and the error-vs-ratio plot of ``rows``."""
    md, csv = table(rows, COLUMNS)
    head = (f"LC on LeNet-300-100 / mnist-sample (reference test error {ref_error:.2f} %); μ = 9e-5·1.1^k, 40 steps; "
            "'epochs' = μ steps × L-step epochs; 'ref s' = reference training for as many epochs, timed in the same run.\n\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compress_lc.md").write_text(head + md)
    (RESULTS / "compress_lc.csv").write_text(csv)
    (RESULTS / "compress_lc.json").write_text(json.dumps({"reference_test_error": ref_error, "rows": rows}, indent=2))
    points = sorted((r["lc_bits_ratio"], r["test_error"], r["row"]) for r in rows)
    plots.error_vs_ratio(points, ref_error, RESULTS / "compress_lc.png", "test error %",
                         title="LC: test error vs compression ratio (labels: row)")
    print("\n" + head + md)


if __name__ == "__main__":
    sys.exit(main())
