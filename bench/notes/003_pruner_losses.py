"""Note 003 (pruner masks, 12/05/2023): the sum against the product rejection loss, and λ ×10 every 20 epochs
against a fixed λ = 1e5, 1e6, 1e7, on LeNet-300-100's hidden units, beside the note's outcomes.

    python bench/notes/003_pruner_losses.py [--scale quick|note] [--out models/notes/003_pruner_losses]
"""
import sys

import numpy as np

import common
from common import api, at

NOTE = "003_pruner_losses"
REJECTION = {"sum": "the reference: gates update very slowly",
             "product": "the problem persists: gates still update very slowly"}
FIXED = "not working: weights updated too little or too drastically"
LAMBDA = {"λ ×10 every {} epochs, 1 → 1e7": "works: pruning occurs well and completely (20 epochs)",
          "fixed λ = 1e5": FIXED, "fixed λ = 1e6": FIXED, "fixed λ = 1e7": FIXED}


def main(argv=None):
    args = common.arguments(__doc__, NOTE).parse_args(argv)
    scale = at(args.scale, common.PRUNER_QUICK, common.PRUNER_NOTE)
    report = common.Report(NOTE, "Note 003: pruner rejection losses and the λ schedule", args.scale, [
        "Reference: zoo `lenet300` on the bundled MNIST sample, 30 epochs; the note's network (a b-tagger) is not "
        "public. Gates on dense_1 and dense_2, keep 35 % (105 and 35 units; the note gives no n).",
        "Every run: `--method pruner --lambda-rule schedule` (λ rises only on its schedule, as in the note), gate "
        "lr 1e-2 (Adam), network weights at 1e-2 with the reference's optimizer (SGD).",
        "Rejection losses: `--rejection sum,product` with `--mu balanced`, the note's μ = ⟨L_cla⟩ / (λ·⟨L_pru⟩) "
        "over the last 10 epochs.",
        "λ: the note's μ makes μ·λ = ⟨L_cla⟩ / ⟨L_pru⟩ whatever λ is, so under it a fixed λ of 1e5, 1e6 or 1e7 "
        "and the ×10 schedule are one and the same run. They are compared under `--mu adaptive` "
        "(μ = ⟨L_cla⟩ / ⟨L_pru⟩, λ sets the pressure), fixed λ as `--lambda-start 1e5,1e6,1e7 --lambda-factor 1`.",
        *([common.PRUNER_SCALED] if args.scale == "quick" else []),
    ])
    ref = args.out / "reference"
    ref_error = common.reference(ref, seed=args.seed, model="lenet300", data="mnist-sample", epochs=30)["metrics"]["test_error"]
    run = dict(seed=args.seed, overwrite=True, lambda_rule="schedule", **scale)
    rejection = api.compress(ref, "pruner", args.out / "rejection", rejection="sum,product", mu="balanced", **run)
    schedule = api.compress(ref, "pruner", args.out / "schedule", mu="adaptive", **run)
    fixed = api.compress(ref, "pruner", args.out / "fixed", mu="adaptive", lambda_start="1e5,1e6,1e7",
                         lambda_factor=1, **run)
    text = f"Reference test error {ref_error:.2f} %; the note's outcomes are its own words (no numbers survive)."
    report.table("Sum against product rejection loss (μ balanced)", [
        common.pruner_row(k, r, REJECTION[k]) for k, r in zip(REJECTION, rejection)], common.PRUNER_COLUMNS, text=text)
    labels = [k.format(scale["lambda_every"]) for k in LAMBDA]
    report.table("λ ×10 on a schedule against a fixed λ (μ adaptive)", [
        common.pruner_row(k, r, n) for k, r, n in zip(labels, [schedule, *fixed], LAMBDA.values())], common.PRUNER_COLUMNS)
    runs = {f"{k} rejection, μ balanced": r for k, r in zip(REJECTION, rejection)}
    runs.update({f"{k}, μ adaptive": r for k, r in zip(labels, [schedule, *fixed])})
    report.figure(common.pruner_figure(runs))
    press = [r["method"]["final_mu"] * r["method"]["final_lambda"] for r in rejection]
    fixed_open = "; ".join(common.pruner_row(k, r, "")["open"] for k, r in zip(list(LAMBDA)[1:], fixed))
    report.text(f"""## Why

- Sum and product stall alike: the product term Πσ ≈ σ^N vanishes for N = 300 and 100 gates (the note's own
  argument), and under the note's μ the weight μ·λ on L_pru stays ⟨L_cla⟩ / ⟨L_pru⟩ (at the end
  {', '.join(f"{p:.3g}" for p in press)}), which the λ schedule cannot raise: the pressure never grows.
- A fixed large λ shuts gates at once (fewest open: {', '.join(str(int(min(r['history']['open_gates'][:r['method']['gate_epochs']]))) for r in fixed)} of 400,
  by epoch {', '.join(str(1 + int(np.argmin(r['history']['open_gates'][:r['method']['gate_epochs']]))) for r in fixed)}), then they reopen slowly and end short of the targets, still moving (open at
  the end {fixed_open}; targets 105, 35): the note's "too drastically". The ×10 schedule closes them
  gradually and reaches the targets exactly.
""")
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
