"""One-dimensional k-means (Lloyd's algorithm on sorted values): the C-step of LC's adaptive
quantization and the initial codebook of weight sharing with fixed assignments."""
import numpy as np


def assign(x, codebook):
    """Index of the nearest entry of the sorted ``codebook`` for every entry of ``x``."""
    if len(codebook) == 1:
        return np.zeros(x.shape, np.int64)
    mids = (codebook[1:] + codebook[:-1]) / 2
    return np.searchsorted(mids, x)


def kmeans_1d(x, codebook, max_iter=100):
    """Lloyd's algorithm in one dimension from ``codebook``; an empty cluster keeps its value.
    Returns the sorted codebook (a fixed point: each entry is its cluster's mean) and labels.

    ``x`` is sorted once; a sorted codebook's clusters are then runs of the sorted values, so an
    iteration costs k binary searches and k differences of a cumulative sum instead of a pass
    over all of ``x``. Same iterates as assigning every value; from a cold start on 235k normal
    values it took 0.04-0.05 s instead of 0.16 s (k=2), 0.68 s (k=4) and 3.4 s (k=16).
    """
    codebook = np.sort(np.asarray(codebook, np.float64))
    ordered = np.sort(x)
    sums_before = np.concatenate([[0.0], np.cumsum(ordered)])
    bounds = _run_bounds(ordered, codebook)
    for _ in range(max_iter):
        counts = np.diff(bounds)
        sums = np.diff(sums_before[bounds])
        codebook = np.where(counts > 0, sums / np.maximum(counts, 1), codebook)
        order = np.argsort(codebook)
        codebook = codebook[order]
        new = _run_bounds(ordered, codebook)
        if np.array_equal(new, bounds) and np.all(order == np.arange(len(order))):
            break
        bounds = new
    return codebook, assign(x, codebook)


def _run_bounds(ordered, codebook):
    """Where each cluster of the sorted ``codebook`` starts and ends in the sorted values
    (cluster j holds mids[j-1] < x <= mids[j], as :func:`assign` decides)."""
    mids = (codebook[1:] + codebook[:-1]) / 2
    return np.concatenate([[0], np.searchsorted(ordered, mids, side="right"), [len(ordered)]])
