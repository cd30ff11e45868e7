"""Error against size: the figures of ``kcompress report`` and of every sweep folder.

One figure is one dataset and metric (error % of a classifier, ε of a learned index): a line per
series (a method, an LC compression type, or one value of a sweep's last axis), test error
solid and train error dotted in the same colour, the reference as horizontal lines. The x axis
(bits ratio, parameters kept, codebook size) is logarithmic: the interesting models span 2× to
100× and more.
"""
import math

import matplotlib.ticker

from kcompress.reporting.plots import plt, save_figure

X_AXES = {
    "bits_ratio": ("compression ratio (reference bits / compressed bits)", "%g×"),
    "root_bits_ratio": ("compression ratio (root reference bits / compressed bits)", "%g×"),
    "nonzeros": ("parameters kept (non-zero weights)", "%g"),
    "codebook": ("codebook size (most distinct values in a quantized kernel)", "%g"),
    "deployed_gzip_bytes": ("smallest deployed file (gzip'd bytes, any format)", "%g"),
}
ANNOTATE_AT_MOST = 16  # more point labels than this overlap into a smear


def _finite(value):
    return value is not None and math.isfinite(float(value))


def error_vs(lines, references, x_key, path, metric="error %", title=None):
    """Draw ``lines`` (``{name: [row, ...]}``, rows with ``x_key``, ``train``, ``test`` and
    ``setting``) and the ``references`` (rows with ``train``, ``test``, ``model``) into ``path``."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = [(name, sorted((r for r in rows if _finite(r.get(x_key))), key=lambda r: r[x_key]))
             for name, rows in lines.items()]
    drawn = [(name, rows) for name, rows in drawn if rows]
    annotate = sum(len(rows) for _, rows in drawn) <= ANNOTATE_AT_MOST
    for i, (name, rows) in enumerate(drawn):
        x = [r[x_key] for r in rows]
        joined = len(set(x)) == len(x)  # several models at one x (K=4 at two sparsities): points, no zigzag
        ax.plot(x, [r["test"] for r in rows], "o-" if joined else "o", color=f"C{i}", label=f"{name} (test)")
        if any(_finite(r.get("train")) for r in rows):
            ax.plot(x, [r["train"] for r in rows], "o:" if joined else "o", color=f"C{i}", mfc="none",
                    label=f"{name} (train)")
        for r in rows if annotate else ():
            ax.annotate(str(r["setting"]), (r[x_key], r["test"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    for ref in references:
        ax.axhline(ref["test"], color="k", ls="--", lw=1, label=f"reference (test) {ref['test']:.4g}")
        if _finite(ref.get("train")):
            ax.axhline(ref["train"], color="grey", ls=":", lw=1, label=f"reference (train) {ref['train']:.4g}")
    _log_axis(ax, x_key)
    ax.set_ylabel(metric if metric != "ε" else "ε = max |error| (positions)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title(title or f"{metric} vs {X_AXES[x_key][0].split(' (')[0]}")
    save_figure(fig, path)


def _log_axis(ax, x_key):
    label, fmt = X_AXES[x_key]
    ax.set_xscale("log", base=2 if x_key == "codebook" else 10)
    if x_key != "codebook":
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter(fmt))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(label)
