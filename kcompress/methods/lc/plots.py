"""The figure of an LC run: train/test error of w and Δ(Θ), and ‖w − Δ(Θ)‖, per μ step."""
from pathlib import Path

from kcompress.reporting import plots

plt = plots.plt


def plot_steps(record, path, reference_error=None, title="LC"):
    """Train/test error of w and of Δ(Θ) per μ step (DC baseline and reference as lines),
    and ‖w − Δ(Θ)‖ per step on a log scale."""
    steps, m = record["steps"], record["metric"]
    x = [s["step"] + 1 for s in steps]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8))
    for split, style in (("train", ":"), ("test", "-")):
        ax.plot(x, [s[f"{split}_{m}_w"] for s in steps], style, color="C0", label=f"{split} {m} of w")
        ax.plot(x, [s[f"{split}_{m}_delta"] for s in steps], style, color="C1", label=f"{split} {m} of Δ(Θ)")
    ax.axhline(record["dc"][f"test_{m}"], color="C3", ls="--", lw=1, label=f"DC baseline (test) {record['dc'][f'test_{m}']:.2f}")
    if reference_error is not None:
        ax.axhline(reference_error, color="k", ls="--", lw=1, label=f"reference (test) {reference_error:.2f}")
    ax.set_xlabel("μ step")
    ax.set_ylabel(m)
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    bx.semilogy(x, [s["distance"] for s in steps], "o-", ms=3)
    bx.set_xlabel("μ step")
    bx.set_ylabel("‖w − Δ(Θ)‖")
    bx.grid(alpha=0.3, which="both")
    twin = bx.twinx()
    twin.semilogy(x, [s["mu"] for s in steps], color="grey", lw=0.8)
    twin.set_ylabel("μ", color="grey")
    fig.suptitle(title)
    plots.save_figure(fig, Path(path))
