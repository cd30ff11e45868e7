"""Note 004 (pruner masks, 28/04/2023): learning-rate sweeps on L_sel + L_rej alone, the λ ×10 workaround
against a fixed λ, and the proposed coefficients on L_pru (tied to the net's size, inverse to L_pru's change).

    python bench/notes/004_pruner_lr.py [--scale quick|note] [--out models/notes/004_pruner_lr]
"""
import sys

import common
from common import api, at

NOTE = "004_pruner_lr"
FLAT = "L_pru freezes in a flat valley, faster at a higher lr; pruning does not occur"


def main(argv=None):
    args = common.arguments(__doc__, NOTE).parse_args(argv)
    scale = at(args.scale, common.PRUNER_QUICK, common.PRUNER_NOTE)
    rates = at(args.scale, (1e-3, 1e-1), (1e-4, 1e-3, 1e-2, 1e-1, 1.0))
    report = common.Report(NOTE, "Note 004: the pruner's learning rate, λ workaround and L_pru coefficients", args.scale, [
        "Reference: zoo `lenet300` on the bundled MNIST sample, 30 epochs; the note's network is not public. Gates "
        "on dense_1 and dense_2, keep 35 % (the note gives no n).",
        "L_sel + L_rej alone: `--pruning-loss-only --mu 1 --lambda-factor 1 --lambda-rule schedule`, the gates' "
        f"Adam learning rate swept over {', '.join(f'{r:g}' for r in rates)} (the note's values are not given); "
        "one more at 1e-2 with `--gate-init-spread 0.5` (gates start unequal).",
        "With the task loss (μ adaptive): λ ×10 on a schedule (1 → 1e7) against λ = 1 fixed (`--lambda-factor 10,1`); "
        "the note's proposed coefficients at λ = 1: `--size-coefficient units` (c = 400 gated units) and "
        "`--lambda-rule slope` (λ ×min(10, 1e-3/|ΔL_pru|) per epoch).",
        "The note's separate learning rates for L_cla and L_pru: kcompress always trains the gates with their own "
        "Adam rate (`--gate-lr`), the network at `--lr`.",
        *([common.PRUNER_SCALED + f" Learning rates {', '.join(f'{r:g}' for r in rates)} (note scale: 1e-4 ... 1)."]
          if args.scale == "quick" else []),
    ])
    ref = args.out / "reference"
    ref_error = common.reference(ref, seed=args.seed, model="lenet300", data="mnist-sample", epochs=30)["metrics"]["test_error"]
    run = dict(seed=args.seed, overwrite=True, lambda_rule="schedule", **scale)
    alone = dict(pruning_loss_only=True, mu=1, lambda_factor=1, **run)
    swept = api.compress(ref, "pruner", args.out / "lr", gate_lr=",".join(map(str, rates)), **alone)
    spread = api.compress(ref, "pruner", args.out / "spread", gate_lr=1e-2, gate_init_spread=0.5, **alone)
    lr_rows = [common.pruner_row(f"gate lr {r:g}", s, FLAT) for r, s in zip(rates, swept)]
    lr_rows.append(common.pruner_row("gate lr 0.01, unequal start (spread 0.5)", spread, "-"))
    report.table("L_sel + L_rej alone, by learning rate", lr_rows, common.PRUNER_COLUMNS,
                 text="Test error after removing the units the gates chose (the network is not trained here).")
    lam = api.compress(ref, "pruner", args.out / "lambda", mu="adaptive", lambda_factor="10,1", **run)
    size = api.compress(ref, "pruner", args.out / "size", mu="adaptive", lambda_factor=1, size_coefficient="units",
                        **run)
    slope = api.compress(ref, "pruner", args.out / "slope", mu="adaptive",  # λ by the slope rule alone
                         **{**run, "lambda_rule": "slope", "lambda_every": 10 ** 6})
    lam_rows = [
        common.pruner_row(f"λ ×10 every {scale['lambda_every']} epochs", lam[0], "works, but does not explain why"),
        common.pruner_row("λ = 1 fixed", lam[1], "L_pru decreases so slowly that pruning never takes place"),
        common.pruner_row("λ = 1, c = units on L_pru", size, "proposed (no result)"),
        common.pruner_row("λ by the slope of L_pru", slope, "proposed (no result)")]
    report.table("With the task loss: the λ workaround and the proposed coefficients", lam_rows, common.PRUNER_COLUMNS,
                 text=f"Reference test error {ref_error:.2f} %.")
    report.figure(common.pruner_figure({**{r["run"]: s for r, s in zip(lr_rows, [*swept, spread])},
                                        "λ schedule": lam[0], "λ = 1": lam[1], "c = units": size, "slope": slope}))
    equal, spread_row = lr_rows[:-1], lr_rows[-1]
    report.text(f"""## Why

- L_sel + L_rej alone: every gate starts at the same value (the note's σ ≈ 1, kcompress's default), so all gates
  of a layer get the same gradient and move as one; they cannot split into n open and N − n closed. L_pru stops
  at {', '.join(f"{r['L_pru last']:.3g}" for r in equal)} whatever the rate (gates open: {'; '.join(r['open'] for r in equal)}); the rate only
  sets how soon (after epoch 1: {', '.join(f"{r['L_pru first']:.3g}" for r in equal)}). Started unequal (`--gate-init-spread 0.5`) the same
  loss reaches {spread_row['L_pru last']:.2g} with gates {spread_row['open']}: the note's flat valley is this symmetric point.
- With the task loss the task gradient breaks the symmetry, slowly: at λ = 1 it leaves L_pru at
  {lam_rows[1]['L_pru last']:.3g}; the λ schedule, c = 400 and the slope rule all raise the pressure and converge
  (epochs {lam_rows[0]['converged']}, {lam_rows[2]['converged']}, {lam_rows[3]['converged']}), as the note's "coefficient that increases the slope" argues.
""")
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
