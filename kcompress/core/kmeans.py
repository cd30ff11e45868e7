"""One-dimensional k-means: Lloyd's algorithm on sorted values (the C-step of LC's adaptive quantization)
and the optimal partition (the initial codebook of a small kernel under weight sharing with fixed assignments)."""
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


def exact_codebook(x, k):
    """The k values of the optimal 1-D k-means of ``x`` (least total squared error; fewer when ``x`` holds
    fewer distinct values): clusters of sorted values are runs, so a dynamic programme over split points finds
    the best partition, each level by divide and conquer on the monotone split (O(k·n·log n)). Lloyd's
    algorithm from quantiles can merge the steps of a geometric ladder of weights (a learned index's weights
    on the key's bits: 1, 2, 4, … 2048) into one value, which the optimum keeps apart."""
    v = np.sort(np.asarray(x, np.float64).ravel())
    n, k = len(v), min(k, len(np.unique(v)))
    s1, s2 = np.concatenate([[0.0], np.cumsum(v)]), np.concatenate([[0.0], np.cumsum(v * v)])

    def cost(i, j):  # squared error of the run v[i:j] around its mean
        return s2[j] - s2[i] - (s1[j] - s1[i]) ** 2 / np.maximum(j - i, 1)

    best, splits = cost(0, np.arange(n + 1)), []
    for c in range(1, k):
        level, split = np.full(n + 1, np.inf), np.zeros(n + 1, np.int64)
        stack = [(c + 1, n, c, n - 1)]  # ends j to fill, range of the last cluster's start
        while stack:
            lo, hi, first, last = stack.pop()
            if lo > hi:
                continue
            j = (lo + hi) // 2
            starts = np.arange(first, min(j - 1, last) + 1)
            values = best[starts] + cost(starts, j)
            i = int(np.argmin(values))
            level[j], split[j] = values[i], starts[i]
            stack += [(lo, j - 1, first, starts[i]), (j + 1, hi, starts[i], last)]
        best = level
        splits.append(split)
    ends = [n]
    for split in reversed(splits):
        ends.append(int(split[ends[-1]]))
    ends = [0, *reversed(ends)]
    return np.array([v[a:b].mean() for a, b in zip(ends[:-1], ends[1:])])
