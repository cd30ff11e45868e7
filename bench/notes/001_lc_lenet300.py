"""Note 001 (LC on LeNet-300-100): the note's reference recipe, then LC pruning (κ sweep), quantization
(k sweep) and low rank (rank sweep) at μ = 9e-5·1.1^k for 40 steps: figures 4-9 beside the note's numbers.

    python bench/notes/001_lc_lenet300.py [--scale quick|note] [--out models/notes/001_lc_lenet300]
"""
import sys

import common
from common import api, at, plt
from kcompress.reporting.collect import collect

NOTE = "001_lc_lenet300"
# The note's reference: "batch size 256, learning rate 0.2, gamma 0.9, step size 2, momentum 0.9"; epochs not given
REFERENCE = dict(model="lenet300", data="mnist-sample", batch_size=256, lr=0.2, lr_schedule="step", gamma=0.9,
                 step_size=2, momentum=0.9, epochs=30)
NOTE_REFERENCE = 1.33  # test error % on full MNIST (60k train); the note's section 1 ("1.33% accuracy" means error)
# per compression: (task(s), swept parameter, note-scale values, quick values, L-step lr, the note's best test
# error %). The lr is the LC toolkit lenet300 demo's, which the note kept, except low rank: the demo's 0.01
# belongs with its own low-rank μ (1e-3·1.3^k); at the note's μ it ended at 82 % test error (rank 10, quick), 0.1 at 22 %
SWEEPS = {
    "pruning": (["all:prune-l0:kappa=0.05"], "kappa", (0.2, 0.1, 0.05, 0.02, 0.01, 0.005), (0.05, 0.01), 0.1, 1.19),
    "quantization": (["each:quant:k=2"], "k", (2, 4, 8, 16, 32), (2, 4), 0.09, 1.43),
    "low rank": (["dense_1:lowrank:rank=10", "dense_2:lowrank:rank=10"], "rank", (5, 10, 20, 40, 80), (10, 20),
                 0.1, 1.37),
}
X_AXIS = {"pruning": ("nonzeros", "parameters kept (non-zero weights)"),
          "quantization": ("codebook", "codebook size"), "low rank": ("rank", "rank of dense_1 and dense_2")}


def main(argv=None):
    args = common.arguments(__doc__, NOTE).parse_args(argv)
    # quick: one L-epoch per μ step at batch 64 (70 SGD steps) instead of five at 256 (90): the same μ schedule in
    # a fifth of the epochs (κ = 5 %: 5.97 % test error in 41 s against 6.27 % in 69 s); fewer epochs at batch
    # 256 left LC no better than DC (10.6 % against 11.3 %)
    l_epochs, batch = at(args.scale, 1, 5), at(args.scale, 64, 256)
    report = common.Report(NOTE, "Note 001: LC on LeNet-300-100 (figures 4-9)", args.scale, [
        "Data: the bundled MNIST sample (5k train / 10k test), not the note's full MNIST (60k train): our reference "
        "errs ≈ 5-6 %, the note's 1.33 %. Compare the change of test error against each one's reference (pp).",
        "Reference: the note's recipe (`--batch-size 256 --lr 0.2 --lr-schedule step --gamma 0.9 --step-size 2 "
        "--momentum 0.9`), 30 epochs (the note gives none).",
        f"LC: μ = 9e-5·1.1^k, 40 steps (the note's), {l_epochs} L-epoch(s) per step at batch {batch}, L-step "
        "lr·0.98^step with the LC toolkit lenet300 demo's lr (0.1 pruning, 0.09 quantization; the note kept the "
        "demo's L-step) and 0.1 for low rank (the demo's 0.01 goes with its own low-rank μ 1e-3·1.3^k and ended at "
        "82 % test error at the note's μ)" + (" (note scale: 5 L-epochs at the reference's batch 256; quick keeps the "
                                             "μ schedule and 80 % of the SGD steps in a fifth of the epochs)."
                                             if args.scale == "quick" else "."),
        "The note's figures 4-9 lost their data in the text; what it states is compared: the best test error per "
        "compression (pruning 1.19 %, quantization 1.43 %, low rank 1.37 % vs its reference 1.33 %) and train "
        "error 0.00 % for every compressed model except low rank's highest ratio. Its κ, k and rank values are "
        "not given: ours are listed.",
        *(["Sweeps at quick scale: κ " + ", ".join(map(str, SWEEPS['pruning'][3])) + "; k "
           + ", ".join(map(str, SWEEPS['quantization'][3])) + "; rank " + ", ".join(map(str, SWEEPS['low rank'][3]))
           + " (note scale: " + "; ".join(f"{s[1]} " + ", ".join(map(str, s[2])) for s in SWEEPS.values()) + ")."]
          if args.scale == "quick" else []),
    ])
    ref = args.out / "reference"
    ref_error = common.reference(ref, seed=args.seed, **REFERENCE)["metrics"]["test_error"]
    rows, best = [], []
    for name, (tasks, param, note_values, quick_values, lr, note_best) in SWEEPS.items():
        values = at(args.scale, quick_values, note_values)
        results = api.compress(ref, "lc", args.out / name.replace(" ", "-"), overwrite=True, seed=args.seed, task=tasks,
                               sweep=[f"{param}={','.join(map(str, values))}"], mu0=9e-5, mu_factor=1.1,
                               mu_steps=40, l_epochs=l_epochs, batch_size=batch, lr=lr, lr_decay=0.98)
        for value, result in zip(values, results):
            c = next(r for r in collect([result.folder]) if r["method"] != "reference")  # the report's row
            rows.append({"compression": name, param: value, "value": value, "dc test": result["method"]["dc"]["test_error"],
                         "distance": result["method"]["steps"][-1]["distance"],
                         "train": c["train"], "test": c["test"], "Δ test": c["test"] - ref_error,
                         "bits ratio": c["bits_ratio"], "nonzeros": c["nonzeros"], "codebook": c["codebook"],
                         "rank": value if name == "low rank" else None})
        top = min((r for r in rows if r["compression"] == name), key=lambda r: r["test"])
        best.append({"compression": name, "setting": f"{param} = {top['value']}", "test": top["test"],
                     "Δ test": top["Δ test"], "train": top["train"], "bits ratio": top["bits ratio"],
                     "note best test": note_best, "note Δ test": note_best - NOTE_REFERENCE})
    report.table("Best test error per compression, beside the note's", best,
                 ["compression", "setting", ("test", "test error %", "{:.2f}"), ("Δ test", "Δ vs reference (pp)", "{:+.2f}"),
                  ("train", "train error %", "{:.2f}"), ("bits ratio", "bits ratio", "{:.1f}"),
                  ("note best test", "note test error % (full MNIST)"), ("note Δ test", "note Δ vs its reference (pp)", "{:+.2f}")],
                 text=f"Our reference: test error {ref_error:.2f} %; the note's: {NOTE_REFERENCE} %.")
    report.table("Every model (figures 4-9: error vs compression ratio and vs parameters / codebook / rank)", rows,
                 ["compression", "value", ("dc test", "DC test error %", "{:.2f}"), ("train", "LC train error %", "{:.2f}"),
                  ("test", "LC test error %", "{:.2f}"), ("Δ test", "Δ test (pp)", "{:+.2f}"),
                  ("distance", "last ‖w − Δ(Θ)‖", "{:.2f}"), ("bits ratio", "bits ratio", "{:.1f}"), "nonzeros",
                  "codebook"])
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for col, (name, note) in enumerate((n, s[5]) for n, s in SWEEPS.items()):
        mine = [r for r in rows if r["compression"] == name]
        x_key, x_label = X_AXIS[name]
        for ax, key, label in ((axes[0, col], "bits ratio", "compression ratio (bits)"), (axes[1, col], x_key, x_label)):
            xs = [r[key] for r in mine]
            ax.plot(xs, [r["test"] - ref_error for r in mine], "o-", label="LC test")
            ax.plot(xs, [r["train"] for r in mine], "o:", mfc="none", label="LC train error % (absolute)")
            ax.plot(xs, [r["dc test"] - ref_error for r in mine], "x--", label="DC test")
            ax.axhline(note - NOTE_REFERENCE, color="k", ls="--", lw=1, label=f"note's best ({note - NOTE_REFERENCE:+.2f})")
            ax.axhline(0, color="grey", lw=0.6)
            ax.set(title=f"{name}", xlabel=label, ylabel="test error − reference's (pp)", xscale="log", yscale="symlog")
            ax.legend(fontsize=7)
    report.figure(fig)
    worse = [r for r in rows if r["test"] > r["dc test"]]
    report.text("## Why ours differ\n\n- Our reference errs more than the note's (5k training images, not 60k): "
                "the Δ columns compare each to its own reference.\n" + (
                    "- LC ends worse than its own DC baseline for " + ", ".join(
                        f"{r['compression']} {r['value']} ({r['test']:.2f} % vs DC {r['dc test']:.2f} %, last "
                        f"‖w − Δ‖ {r['distance']:.1f})" for r in worse) + ": μ reaches only 9e-5·1.1^39 = 3.7e-3, "
                    "so w and Δ(Θ) have not met when the schedule ends; the LC toolkit's own low-rank example "
                    "runs μ up to 1e-3·1.3^39 ≈ 28. The note reports 1.37 % for low rank with this schedule; "
                    "its ranks and layers are not given.\n" if worse else ""))
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
