"""Benchmark of the LC method at real size: six LC settings, then one report over them.

Each row is one ``kcompress compress --method lc`` into OUT/row<N> from the reference (default
models/ref: LeNet-300-100, 30 epochs, seed 0, bundled MNIST sample); then ``kcompress report``
over the reference and the rows writes OUT/report/ (report.md/csv, error vs bits ratio, vs
parameters kept, vs codebook size). The DC baseline, the per-μ-step errors of w and Δ(Θ) and the
wall time of each row are in its run.json and lc_steps.png.

    python bench/compress_lc.py [--reference models/ref] [--out models/lc-bench] [--rows 1,2,3]
                                [--mu-steps 40] [--l-epochs 4]
"""
import argparse
import sys
from pathlib import Path

from kcompress import api
from kcompress.methods.lc.settings import LCSettings

# row: (tasks, L-step settings other than the defaults)
ROWS = {
    1: (["all:prune-l0:kappa=0.05"], {}),  # keep 5 % of all weights
    2: (["all:prune-l0:kappa=0.01"], {}),  # keep 1 %
    # 1-bit weights need the L-steps to move further per μ step: at the reference's rate (0.05)
    # ‖w − Δ(Θ)‖ stays ≈ 7–10 and Δ(Θ) ends at 7.2–7.8 % test error; twice the rate reaches it
    3: (["each:quant:k=2"], {"lr": 0.1}),
    4: (["each:quant:k=4"], {}),
    5: (["all:quant:k=2+prune-l0:kappa=0.01"], {}),  # one k=2 codebook + 1 % sparse correction
    6: (["dense_1:prune-l0:kappa=5000", "dense_2:lowrank:rank=10", "dense_3:quant:k=2"], {}),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, default=Path("models/ref"))
    p.add_argument("--out", type=Path, default=Path("models/lc-bench"))
    p.add_argument("--rows", default=",".join(map(str, ROWS)))
    p.add_argument("--l-epochs", type=int, default=LCSettings.l_epochs)
    p.add_argument("--mu-steps", type=int, default=LCSettings.mu_steps)
    args = p.parse_args(argv)
    dirs = []
    for row in (int(r) for r in args.rows.split(",")):
        tasks, settings = ROWS[row]
        dirs.append(args.out / f"row{row}")
        api.compress(args.reference, "lc", dirs[-1], overwrite=True, task=tasks, l_epochs=args.l_epochs,
                     mu_steps=args.mu_steps, **settings)
    api.report([args.reference, *dirs], args.out / "report", overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
