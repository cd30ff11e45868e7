"""Note 002 (α-schedule, weekly report 4): 65 % of the parameters replaced at once, α = e^(−0.05k), learning rate
reset to 1e-3 and cut on plateau at every α, no early stopping; the train/validation curves per α (figures 1-3)
for classification (labels) and regression (teacher) targets, beside what the note states.

    python bench/notes/002_alpha_schedule.py [--scale quick|note] [--model lenet300|convnet]
"""
import sys

import numpy as np

import common
from common import api, at, plt

NOTE = "002_alpha_schedule"
QUICK_ALPHAS = (0.951, 0.607, 0.449)  # e^(−0.05k) at k = 1, 10, 16: the α values of the note's figure 1
# The note's settings: prune 65 %, exp schedule rate 0.05, ≤ 350 epochs per α, lr 1e-3 reset per α and cut when
# the validation loss stalls, no early stopping, pretrained weights frozen ("allow weight updates" is its plan)
METHOD = dict(prune=0.65, alpha_decay=0.05, alpha_lr_drops=0, lr=1e-3, lr_schedule="plateau", patience=0,
              freeze_original=True)


def per_alpha(history, target):
    """One row per α step: epochs, the first and last train/validation loss, the last accuracies."""
    alphas, rows = np.asarray(history["alpha"]), []
    for a in dict.fromkeys(history["alpha"]):
        idx = np.flatnonzero(alphas == a)
        pick = lambda key, i: history[key][idx[i]] if key in history else None  # noqa: E731
        acc = "label_accuracy" if target == "teacher" else "val_accuracy"
        rows.append({"target": target, "alpha": a, "epochs": len(idx), "train loss first": pick("loss", 0),
                     "train loss last": pick("loss", -1), "val loss first": pick("val_loss", 0),
                     "val loss best": min(history["val_loss"][i] for i in idx), "val loss last": pick("val_loss", -1),
                     "train acc last": pick("accuracy", -1), "val acc last": pick(acc, -1),
                     "val acc min": min(history[acc][i] for i in idx) if acc in history else None})
    return rows


def curves(ax, history, key, label):
    """``history[key]`` per epoch, each α in its own colour (the note's figures colour by α)."""
    alphas = np.asarray(history["alpha"], dtype=float)
    for a in dict.fromkeys(history["alpha"]):
        idx = np.flatnonzero(alphas == a)
        ax.plot(idx + 1, np.asarray(history[key])[idx], color=plt.get_cmap("viridis")(1 - a),
                ls="-" if key.startswith(("val", "label")) else ":", label=f"{label} α={a:.3g}")


def main(argv=None):
    parser = common.arguments(__doc__, NOTE)
    parser.add_argument("--model", choices=("lenet300", "convnet"), default="lenet300",
                        help="zoo reference (the note's net had conv layers: convnet is its zoo analogue)")
    args = parser.parse_args(argv)
    epochs = at(args.scale, 15, 350)
    schedule = at(args.scale, dict(alpha_schedule="list", alpha_list=",".join(map(str, QUICK_ALPHAS))),
                  dict(alpha_schedule="exp"))
    report = common.Report(NOTE, "Note 002: the α-schedule, curves per α (figures 1-3)", args.scale, [
        f"Reference: zoo `{args.model}` on the bundled MNIST sample, 30 epochs (kcompress's recipe; the note's net "
        "is its own CNN, not given).",
        "α-schedule: `--prune 0.65 --alpha-lr-drops 0 --lr 1e-3 --lr-schedule plateau --patience 0 --freeze-original`"
        " (Adam, cut ×0.1 after 2 stalled epochs), targets `labels` (classification) and `teacher` (mean squared "
        "error per output logit to the original model's, the note's regression).",
        (f"Quick: α = {', '.join(map(str, QUICK_ALPHAS))} (the note's figure 1 values, e^(−0.05k) at k = 1, 10, 16), "
         f"then α = 0, {epochs} epochs each (note: α = e^(−0.05k) for every k down to 0.05, then 0; ≤ 350 epochs "
         "each, no early stopping)." if args.scale == "quick" else
         "α = e^(−0.05k) for every k until α < 0.05, then 0; 350 epochs each (the note's run was stopped part-way)."),
    ])
    ref = args.out / "reference"
    ref_record = common.reference(ref, seed=args.seed, model=args.model, data="mnist-sample", epochs=30)
    rows, finals, histories = [], [], {}
    for target in ("labels", "teacher"):
        result = api.compress(ref, "alpha", args.out / target, overwrite=True, seed=args.seed, target=target,
                              epochs_per_alpha=epochs, **schedule, **METHOD)
        histories[target] = result["history"]
        rows += per_alpha(result["history"], target)
        finals.append({"target": target, "test": result.metrics["test_error"],
                       "reference test": ref_record["metrics"]["test_error"],
                       "kept": result["method"]["kept_share"], "params": result.compression["total"]["params"]})
    columns = ["target", ("alpha", "α", "{:.3g}"), "epochs", ("train loss first", "train loss first", "{:.4g}"),
               ("train loss last", "train loss last", "{:.4g}"), ("val loss first", "val loss first", "{:.4g}"),
               ("val loss best", "val loss best", "{:.4g}"), ("val loss last", "val loss last", "{:.4g}"),
               ("train acc last", "train acc", "{:.4f}"), ("val acc min", "val acc min", "{:.4f}"),
               ("val acc last", "val acc last", "{:.4f}")]
    report.table("Per α (figures 1-3): losses and accuracies", rows, columns,
                 text="Teacher rows: losses are the mse to the original logits; val acc is on the true labels.")
    steps = [r for r in rows if r["alpha"] > 0]
    lab, reg = [r for r in steps if r["target"] == "labels"], [r for r in steps if r["target"] == "teacher"]
    report.table("The note's statements beside ours", [
        {"statement": "classification: validation accuracy > 90 % at every α (1 → 0.4)", "note": "yes",
         "ours": f"min {min(r['val acc min'] for r in lab):.1%} over α ≥ {min(r['alpha'] for r in lab):.3g}"},
        {"statement": "classification: the original training accuracy is kept",
         "note": "yes", "ours": f"train acc at the end of each α: "
                                + ", ".join(f"{r['train acc last']:.4f}" for r in lab)},
        {"statement": "regression: the training loss decreases continuously at each α", "note": "yes",
         "ours": f"{sum(r['train loss last'] < r['train loss first'] for r in reg)} of {len(reg)} α steps end lower"},
        {"statement": "regression: the validation loss overfits badly (run aborted at α 0.6)", "note": "yes",
         "ours": ", ".join(f"α {r['alpha']:.3g}: last {r['val loss last']:.3g} vs best {r['val loss best']:.3g}"
                           for r in reg)},
    ], ["statement", "note", "ours"])
    report.table("At α = 0 (the originals removed)", finals,
                 ["target", ("test", "test error %", "{:.2f}"), ("reference test", "reference test error %", "{:.2f}"),
                  ("kept", "share of prunable params kept", "{:.3f}"), "params"],
                 text="The note's run had not reached α = 0; nothing of its to compare.")
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    curves(axes[0], histories["labels"], "accuracy", "train")
    curves(axes[0], histories["labels"], "val_accuracy", "val")
    curves(axes[1], histories["teacher"], "loss", "train")
    curves(axes[1], histories["teacher"], "val_loss", "val")
    curves(axes[2], histories["teacher"], "label_accuracy", "val")
    for ax, title, y in zip(axes, ("fig. 1: classification accuracy", "fig. 2: regression loss (mse to logits)",
                                   "fig. 3: regression, validation accuracy"), ("accuracy", "loss", "accuracy")):
        ax.set(title=title, xlabel="epoch", ylabel=y, yscale="log" if y == "loss" else "linear")
        ax.legend(fontsize=6)
    report.figure(fig)
    at_best = sum(r["val loss last"] <= r["val loss best"] * 1.05 for r in reg)
    if at_best:
        report.text(f"## Why ours differ\n\n- Regression: {at_best} of our {len(reg)} teacher α steps end within 5 % of "
                    f"their best validation loss: no overfitting in {epochs} epochs per α, where the note's grew "
                    "over up to 350 epochs on its own network and targets. The note leaves the cause open ('debug "
                    "regression loss'); the train-validation gap does widen as α falls (figure 2).\n")
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
