"""Compression statistics, counted on a plain Keras model's raw weights.

For every weight array the storage cost is the cheapest of the encodings that apply:

- dense: 32 bits per weight;
- sparse: 32 bits per non-zero plus the cheaper position code, a bitmap (1 bit per weight)
  or relative indices (b bits per gap, b chosen best; a gap longer than 2^b takes filler
  entries holding a zero, as in Han et al. 2016, "Deep Compression");
- shared values: ⌈log₂ k⌉ bits per weight plus a 32-bit codebook of the k distinct values;
- sparse + shared: the sparse position code plus ⌈log₂ k⌉ bits per non-zero and a codebook
  of the k distinct non-zero values;
- int8: 8 bits per weight plus a 32-bit scale per output channel (last axis), when every channel's
  values lie on a grid k·s with integer |k| ≤ 127 — a kernel fake-quantized per channel by
  quantization-aware training holds up to 255 values per channel, too many to share across channels.

Every weight array of every layer is counted (a separable convolution's depthwise and pointwise
kernels, biases, batch-norm parameters and statistics). A low-rank layer is factorised into two
layers, so it is counted as r·(m + n) floats naturally. The ratio is the reference's bits divided
by the compressed model's bits.
"""
import hashlib
import math

import numpy as np

FLOAT_BITS = 32
INT8_LEVELS = 127  # symmetric int8 with a narrow range, as tfmot's weight quantizers and TFLite's int8 kernels
GRID_TOLERANCE = 1e-4  # |k − round(k)| of a value on the grid: float32 rounding of k·s, far below a step


def weights_digest(arrays):
    """A short digest of a model's weight arrays: a recorded measurement of the model (its TFLite
    size) is reused only while the weights it was measured on are still the ones in the file."""
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def index_bits(k):
    """Bits per entry to index one of ``k`` values (⌈log₂ k⌉, at least 1 when k > 1)."""
    return max(1, math.ceil(math.log2(k))) if k > 1 else 0


def position_bits(flat, filler_value_bits=FLOAT_BITS):
    """Bits to store where the non-zeros of ``flat`` are: the cheaper of a bitmap or relative
    indices. Relative indices (Han et al. 2016) store each gap in b bits; a gap longer than 2^b
    takes filler entries (a b-bit gap plus a stored zero of ``filler_value_bits``); the best b
    is used. ``filler_value_bits=None`` allows no fillers (b fits the largest gap)."""
    nz = np.flatnonzero(flat)
    if len(nz) == 0:
        return 0
    gaps = np.diff(np.concatenate([[-1], nz]))
    widest = max(1, index_bits(int(gaps.max())))  # gaps g <= 2^b are stored as g - 1
    options = [flat.size, len(nz) * widest]
    if filler_value_bits is not None:
        for b in range(1, widest):
            fillers = int(np.sum((gaps - 1) >> b))
            options.append((len(nz) + fillers) * b + fillers * filler_value_bits)
    return min(options)


def array_bits(w):
    """(bits, encoding name) of the cheapest encoding of weight array ``w``."""
    w = np.asarray(w)
    flat = w.ravel()
    n = flat.size
    nnz = int(np.count_nonzero(flat))
    options = {"dense": n * FLOAT_BITS}
    if nnz < n:
        options["sparse"] = nnz * FLOAT_BITS + position_bits(flat)
        k_nz = len(np.unique(flat[flat != 0]))
        # shared non-zeros: fillers need a code for zero in the codebook (k_nz + 1 codes)
        options["sparse+shared"] = k_nz * FLOAT_BITS + min(
            position_bits(flat, None) + nnz * index_bits(k_nz),
            position_bits(flat, index_bits(k_nz + 1)) + nnz * index_bits(k_nz + 1))
    k = len(np.unique(flat))
    if k < n:
        options["shared"] = n * index_bits(k) + k * FLOAT_BITS
    if on_int8_grid(w):
        options["int8"] = n * 8 + w.shape[-1] * FLOAT_BITS
    best = min(options, key=options.get)
    return options[best], best


def on_int8_grid(w):
    """Whether every output channel (last axis) of ``w`` (rank ≥ 2) lies on a grid k·s of its own, integer
    |k| ≤ :data:`INT8_LEVELS`. Such a grid has s = max|w| / M for some integer M ≤ 127 (the largest |k|), so
    the M are tried in turn; a channel with more than 255 distinct values is off every grid at once."""
    if w.ndim < 2 or not w.size:
        return False
    channels = w.reshape(-1, w.shape[-1]).T.astype(np.float64)
    ordered = np.sort(channels, axis=1)
    if np.max(1 + np.count_nonzero(np.diff(ordered, axis=1), axis=1)) > 2 * INT8_LEVELS + 1:
        return False
    top = np.max(np.abs(channels), axis=1, keepdims=True)
    ratios = channels / np.where(top > 0, top, 1.0)  # in [-1, 1]; an all-zero channel is on every grid
    found = np.zeros(len(channels), bool)
    for m in range(1, INT8_LEVELS + 1):
        k = ratios[~found] * m
        found[~found] = np.all(np.abs(k - np.round(k)) <= GRID_TOLERANCE, axis=1)
        if found.all():
            return True
    return False


def array_name(weight, weights):
    """``weight``'s name in its layer's row: the last part (``kernel``, ``depthwise_kernel``,
    ``pointwise_kernel``, ``bias``), or the whole name where that is not unique in ``weights``
    (a nested model's layers each have a ``kernel``), so that no array hides another."""
    def short(w):
        return w.name.split("/")[-1].split(":")[0]

    unique = sum(short(w) == short(weight) for w in weights) == 1
    return short(weight) if unique else weight.name.split(":")[0]


def layer_stats(model):
    """Per-layer parameter, non-zero, distinct-value and bit counts of a plain Keras model."""
    rows = []
    for layer in model.layers:
        arrays = [(array_name(w, layer.weights), w.numpy()) for w in layer.weights]
        if not arrays:
            continue
        row = {"layer": layer.name, "params": 0, "nonzeros": 0, "bits": 0, "arrays": {}}
        for name, a in arrays:
            bits, enc = array_bits(a)
            row["arrays"][name] = {
                "shape": list(a.shape),
                "params": int(a.size),
                "nonzeros": int(np.count_nonzero(a)),
                "distinct": int(len(np.unique(a))),
                "bits": int(bits),
                "encoding": enc,
            }
            row["params"] += int(a.size)
            row["nonzeros"] += int(np.count_nonzero(a))
            row["bits"] += int(bits)
        rows.append(row)
    return rows


def compression_stats(model, reference):
    """Per-layer and total statistics of ``model`` with the storage-bit ratio vs ``reference``."""
    layers, ref_layers = layer_stats(model), {r["layer"]: r for r in layer_stats(reference)}
    for row in layers:
        ref = ref_layers.get(row["layer"])
        row["ratio"] = (ref["bits"] / row["bits"]) if ref and row["bits"] else None
    total = {k: sum(r[k] for r in layers) for k in ("params", "nonzeros", "bits")}
    ref_total = {k: sum(r[k] for r in ref_layers.values()) for k in ("params", "nonzeros", "bits")}
    return {
        "layers": layers,
        "total": {
            **total,
            "reference_params": ref_total["params"],
            "reference_nonzeros": ref_total["nonzeros"],
            "reference_bits": ref_total["bits"],
            "bits_ratio": ref_total["bits"] / total["bits"] if total["bits"] else float("inf"),
            "params_ratio": ref_total["params"] / total["params"] if total["params"] else float("inf"),
        },
    }


def format_stats(stats):
    """A printable per-layer table of :func:`compression_stats`' result."""
    head = f"{'layer':<16}{'params':>10}{'nonzeros':>10}{'distinct':>10}{'bits':>12}{'ratio':>8}  encoding"
    lines = [head, "-" * len(head)]
    for r in stats["layers"]:
        distinct = max(a["distinct"] for a in r["arrays"].values())
        encs = ",".join(sorted({a["encoding"] for a in r["arrays"].values()}))
        ratio = f"{r['ratio']:.1f}x" if r.get("ratio") else "-"
        lines.append(f"{r['layer']:<16}{r['params']:>10}{r['nonzeros']:>10}{distinct:>10}{r['bits']:>12}{ratio:>8}  {encs}")
    t = stats["total"]
    lines.append(f"{'total':<16}{t['params']:>10}{t['nonzeros']:>10}{'':>10}{t['bits']:>12}{t['bits_ratio']:>7.1f}x")
    return "\n".join(lines)
