"""Datasets: the bundled MNIST sample, full MNIST, learned-index keys and user npz files.

``load_dataset(spec)`` turns a ``--data`` string into a :class:`Dataset` with train,
validation and test splits. Images are scaled to [0, 1] float32. Learned-index data
(``keys:DIST:N``, ``keys-file:PATH``) has the 64 bits of each sorted key as features and
its position, divided by ``N - 1``, as target; ``y_scale`` turns a target difference back
into positions. An index must answer every key it holds, so its test split is the whole
key set.
"""
import hashlib
import os
import sys
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from kcompress.errors import UsageError, require

KEY_DISTRIBUTIONS = ("uniform", "normal", "lognormal", "exponential")
REQUIRED_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class Dataset:
    """Train/validation/test arrays plus what kind of task they pose."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str  # "classification" or "regression"
    num_classes: int = 0
    y_scale: float = 1.0
    info: dict = field(default_factory=dict)

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def output_dim(self):
        return self.num_classes if self.task == "classification" else int(np.prod(self.y_train.shape[1:]) or 1)

    @property
    def has_val(self):
        return len(self.x_val) > 0

    def describe(self):
        return {
            "name": self.name,
            "task": self.task,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "y_scale": self.y_scale,
            "n_train": int(len(self.x_train)),
            "n_val": int(len(self.x_val)),
            "n_test": int(len(self.x_test)),
            **self.info,
        }


def digest(ds):
    """A hash of every split's arrays: tells a checkpoint of this data from one of other data.
    SHA-256 hashed ~590 MB/s on the 2-core dev machine (fastest of sha256, sha1, blake2b,
    md5 there), so the 47 MB of mnist-sample take ~0.1 s and full MNIST's 220 MB ~0.4 s."""
    h = hashlib.sha256()
    for x in (ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.x_test, ds.y_test):
        x = np.ascontiguousarray(x)
        h.update(f"{x.dtype}{x.shape}".encode())
        h.update(x)  # the buffer itself, no copy
    return h.hexdigest()


def load_dataset(spec="mnist-sample", val_split=0.0, seed=0, strict_keys=False):
    """Load the dataset named by ``spec`` and carve ``val_split`` of train for validation.

    ``strict_keys``: refuse (exit 2) a key file whose keys are unsorted or repeated,
    instead of sorting and deduplicating them with a notice.
    """
    require(0.0 <= float(val_split) < 1.0, f"--val-split must be in [0, 1), got {val_split}")
    if spec == "mnist-sample":
        arrays = _read_npz(resources.files("kcompress") / "resources" / "mnist_sample.npz")
    elif spec == "mnist":
        arrays = _load_full_mnist()
    elif spec.startswith("keys:"):
        return _split_val(_keys_dataset(spec, generate_keys(*_parse_keys_spec(spec))), val_split, seed)
    elif spec.startswith("keys-file:"):
        return _split_val(_keys_dataset(spec, read_keys_file(spec[len("keys-file:"):], strict_keys)), val_split, seed)
    elif spec.endswith(".npz"):
        arrays = _read_npz(spec)
    else:
        raise UsageError(
            f"unknown --data {spec!r}: use mnist-sample, mnist, keys:DIST:N, keys-file:PATH or a PATH.npz"
        )
    return _split_val(_arrays_dataset(spec, arrays), val_split, seed)


def _read_npz(path):
    path = str(path)
    require(os.path.isfile(path), f"--data: file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in REQUIRED_ARRAYS if k not in z.files]
            require(not missing, f"--data {path}: npz lacks array(s) {', '.join(missing)}")
            return {k: z[k] for k in z.files}
    except UsageError:
        raise
    except Exception as e:  # zip/format errors from numpy
        raise UsageError(f"--data {path}: not a readable npz file ({e.__class__.__name__}: {e})") from None


def _load_full_mnist():
    """Full MNIST through Keras' loader: it reads ~/.keras/datasets/mnist.npz when cached."""
    from kcompress.backend import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as e:
        raise UsageError(
            f"--data mnist: not in Keras' cache (~/.keras/datasets/mnist.npz) and could not download it ({e})"
        ) from None
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def _arrays_dataset(name, a):
    _check_arrays(name, a)
    for split in ("train", "test", "val"):
        if f"x_{split}" in a:
            require(f"y_{split}" in a, f"--data {name}: x_{split} has no y_{split}")
            nx, ny = len(a[f"x_{split}"]), len(a[f"y_{split}"])
            require(nx == ny, f"--data {name}: x_{split} has {nx} rows but y_{split} has {ny}")
            require(nx > 0, f"--data {name}: the {split} split is empty")
    xs = {k: _as_features(a[k]) for k in a if k.startswith("x_")}
    shapes = {v.shape[1:] for v in xs.values()}
    require(len(shapes) == 1, f"--data {name}: x arrays have different sample shapes {sorted(map(str, shapes))}")
    y_train = a["y_train"]
    if np.issubdtype(y_train.dtype, np.integer) and y_train.ndim == 1:
        num_classes = int(y_train.max()) + 1
        require(np.unique(y_train).size >= 2, f"--data {name}: y_train holds only class {int(y_train.max())}: "
                                              "a classifier needs at least 2 classes")
        ys = {k: a[k].astype(np.int64) for k in a if k.startswith("y_")}
        for k, y in ys.items():
            bad = y[(y < 0) | (y >= num_classes)]
            require(bad.size == 0, f"--data {name}: {k} has labels out of range [0, {num_classes}), e.g. {bad[:1]}")
        task = "classification"
    else:
        ys = {k: a[k].astype(np.float32) for k in a if k.startswith("y_")}
        num_classes, task = 0, "regression"
    empty_x = np.zeros((0,) + xs["x_train"].shape[1:], np.float32)
    return Dataset(
        name=name,
        x_train=xs["x_train"],
        y_train=ys["y_train"],
        x_val=xs.get("x_val", empty_x),
        y_val=ys.get("y_val", ys["y_train"][:0]),
        x_test=xs["x_test"],
        y_test=ys["y_test"],
        task=task,
        num_classes=num_classes,
    )


def _check_arrays(name, a):
    """Refuse arrays that would train silently into nonsense: non-finite values in any
    split, and labels of another kind (integer classes vs float targets) than y_train's."""
    for k in sorted(k for k in a if k[:2] in ("x_", "y_")):
        require(np.issubdtype(a[k].dtype, np.number), f"--data {name}: {k} has non-numeric dtype {a[k].dtype}")
        if np.issubdtype(a[k].dtype, np.inexact):
            bad = int(a[k].size - np.count_nonzero(np.isfinite(a[k])))
            require(bad == 0, f"--data {name}: {k} holds {bad} non-finite value(s) (NaN or inf) of {a[k].size}")
    kind = _label_kind(a["y_train"])
    for k in sorted(y for y in a if y.startswith("y_")):
        require(_label_kind(a[k]) == kind, f"--data {name}: {k} holds {_label_kind(a[k])} ({a[k].dtype}) but "
                                          f"y_train holds {kind} ({a['y_train'].dtype}): use one label type in every split")


def _label_kind(y):
    return "integer class labels" if np.issubdtype(y.dtype, np.integer) else "float targets"


def _as_features(x):
    """uint8 images become float32 in [0, 1]; other numeric arrays become float32."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    require(np.issubdtype(x.dtype, np.number), f"--data: feature array has non-numeric dtype {x.dtype}")
    return x.astype(np.float32)


def _split_val(ds, val_split, seed):
    """Move a seeded random ``val_split`` share of train into validation (if none was given)."""
    if val_split <= 0 or ds.has_val:
        return ds
    n = len(ds.x_train)
    n_val = int(round(n * val_split))
    require(0 < n_val < n, f"--val-split {val_split} leaves no training or no validation data ({n} rows)")
    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:n_val], np.sort(order[n_val:])
    ds.x_val, ds.y_val = ds.x_train[val], ds.y_train[val]
    ds.x_train, ds.y_train = ds.x_train[train], ds.y_train[train]
    return ds


# ---------------------------------------------------------------- learned-index keys


def _parse_keys_spec(spec):
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
            keys = keys.astype(np.uint64).ravel()
        elif path.endswith((".txt", ".csv")):
            with open(path) as f:
                keys = np.array([int(tok) for tok in f.read().split()], dtype=np.uint64)
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


def _keys_dataset(name, keys):
    n = len(keys)
    x = key_bits(keys)
    y = (np.arange(n, dtype=np.float64) / (n - 1)).astype(np.float32).reshape(-1, 1)
    return Dataset(
        name=name,
        x_train=x,
        y_train=y,
        x_val=x[:0],
        y_val=y[:0],
        x_test=x,
        y_test=y,
        task="regression",
        y_scale=float(n - 1),
        info={"n_keys": int(n), "min_key": int(keys[0]), "max_key": int(keys[-1])},
    )
