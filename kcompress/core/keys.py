"""Learned-index keys: drawn from a named distribution (``keys:DIST:N``) or read from a file.

A key file may be text (one integer per line), ``.npy`` or SOSD binary; unsorted or repeated keys are
sorted and deduplicated with a notice, or refused under ``--strict-keys``.
"""
import os
import sys

import numpy as np

from kcompress.errors import UsageError, require

KEY_DISTRIBUTIONS = ("uniform", "normal", "lognormal", "exponential")


def parse_keys_spec(spec):
    parts = spec.split(":")
    require(len(parts) == 3, f"--data {spec!r}: expected keys:DIST:N, e.g. keys:lognormal:100000")
    dist, n = parts[1], parts[2]
    require(dist in KEY_DISTRIBUTIONS, f"--data {spec!r}: unknown distribution {dist!r} (one of {', '.join(KEY_DISTRIBUTIONS)})")
    require(n.isdigit() and int(n) >= 2, f"--data {spec!r}: N must be an integer >= 2")
    return dist, int(n)


def generate_keys(dist, n, seed=0):
    """``n`` distinct sorted uint64 keys drawn from ``dist`` (seeded, so repeatable)."""
    rng = np.random.default_rng(seed)
    keys = np.zeros(0, np.uint64)
    while len(keys) < n:
        keys = np.unique(np.concatenate([keys, _draw_keys(rng, dist, n)]))
    return np.sort(rng.choice(keys, n, replace=False)) if len(keys) > n else keys


def _draw_keys(rng, dist, n):
    if dist == "uniform":
        return rng.integers(0, np.iinfo(np.uint64).max, n, dtype=np.uint64, endpoint=True)
    draws = {
        "normal": lambda: rng.normal(0.0, 1.0, n),
        "lognormal": lambda: rng.lognormal(0.0, 2.0, n),
        "exponential": lambda: rng.exponential(1.0, n),
    }[dist]()
    # Map the draws affinely onto [0, 2^63) so that all 64-bit patterns stay meaningful.
    lo, hi = draws.min(), draws.max()
    scaled = (draws - lo) / max(hi - lo, 1e-300) * float(2**62)
    return scaled.astype(np.uint64)


def read_keys_file(path, strict=False):
    """Keys from a text file (one per line), a ``.npy`` array or an SOSD binary file.

    Unsorted or repeated keys are sorted and deduplicated with a one-line notice on
    stderr (once per file and process), or refused with exit 2 if ``strict``.
    """
    require(os.path.isfile(path), f"--data keys-file: file not found: {path}")
    try:
        if path.endswith(".npy"):
            keys = np.load(path, allow_pickle=False)
            require(np.issubdtype(keys.dtype, np.integer), f"--data keys-file:{path}: keys must be integers, got {keys.dtype}")
            require(keys.ndim == 1, f"--data keys-file:{path}: keys must be a 1-D array, got shape {keys.shape}")
            require(keys.size == 0 or keys.min() >= 0, f"--data keys-file:{path}: keys must be >= 0 (unsigned 64-bit)")
            keys = keys.astype(np.uint64)
        elif path.endswith((".txt", ".csv")):
            keys = _read_text_keys(path)
        else:
            keys = _read_sosd(path)
    except UsageError:
        raise
    except (ValueError, OverflowError, OSError) as e:
        raise UsageError(f"--data keys-file:{path}: cannot read keys ({e})") from None
    keys = _sorted_distinct(keys, path, strict)
    require(len(keys) >= 2, f"--data keys-file:{path}: needs at least 2 distinct keys")
    return keys


_NOTICES = set()


def _sorted_distinct(keys, path, strict):
    """``keys`` sorted and distinct; says how many were out of order or repeated."""
    unique = np.unique(keys)
    descents, repeats = int(np.count_nonzero(keys[1:] < keys[:-1])), len(keys) - len(unique)
    if descents or repeats:
        what = f"{descents} key(s) out of order and {repeats} repeated key(s)"
        require(not strict, f"--data keys-file:{path}: {what} (--strict-keys refuses such a file)")
        if path not in _NOTICES:
            _NOTICES.add(path)
            print(f"kcompress: notice: --data keys-file:{path}: {what}; sorted and deduplicated "
                  f"to {len(unique)} keys (--strict-keys refuses such a file)", file=sys.stderr)
    return unique


def _read_text_keys(path):
    """Keys of a text file, one per line; a key that is not an integer in [0, 2⁶⁴) is named with its line."""
    keys = []
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            for token in line.split():
                try:
                    key = int(token)
                except ValueError:
                    raise UsageError(f"--data keys-file:{path}: line {line_no}: {token[:40]!r} is not an integer key") from None
                require(0 <= key < 2**64, f"--data keys-file:{path}: line {line_no}: key {token[:40]} is outside "
                                          "[0, 2^64) (keys are unsigned 64-bit)")
                keys.append(key)
    return np.array(keys, dtype=np.uint64)


def _read_sosd(path):
    """SOSD binary: a little-endian uint64 count followed by that many uint64 keys."""
    size = os.path.getsize(path)
    require(size >= 8 and size % 8 == 0, f"--data keys-file:{path}: not an SOSD file (size {size} is not 8 + 8·N)")
    with open(path, "rb") as f:
        count = int(np.frombuffer(f.read(8), dtype="<u8")[0])
        require(count == size // 8 - 1, f"--data keys-file:{path}: SOSD header says {count} keys, file holds {size // 8 - 1}")
        return np.frombuffer(f.read(), dtype="<u8").astype(np.uint64)


def key_bits(keys):
    """The 64 bits of each key, most significant first, as float32 features."""
    big_endian = np.asarray(keys, dtype=">u8").view(np.uint8).reshape(-1, 8)
    return np.unpackbits(big_endian, axis=1).astype(np.float32)
