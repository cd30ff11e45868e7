"""Datasets: the bundled MNIST sample, full MNIST, learned-index keys and user npz files.

``load_dataset(spec)`` turns a ``--data`` string into a :class:`Dataset` with train,
validation and test splits. Images are scaled to [0, 1] float32. Learned-index data
(``keys:DIST:N``, ``keys-file:PATH``) has the 64 bits of each sorted key as features and
its position, divided by ``N - 1``, as target; ``y_scale`` turns a target difference back
into positions. An index must answer every key it holds, so its test split is the whole
key set.
"""
import contextlib
import hashlib
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from typing import Optional

import numpy as np

from kcompress.core.keys import generate_keys, key_bits, parse_keys_spec, read_keys_file
from kcompress.errors import UsageError, require

REQUIRED_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
USED_ARRAYS = REQUIRED_ARRAYS + ("x_val", "y_val")
ARRAYS = "arrays"  # the name of data given as numpy arrays in Python (data_spec cannot reload it)


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
    head: Optional[str] = None  # how model outputs are read (kcompress.core.objectives); None: the task's default
    metric: Optional[str] = None  # the headline metric; None: error for classes, max_error (ε) for regression

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
            **({"head": self.head} if self.head else {}),
            **({"metric": self.metric} if self.metric else {}),
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
    if isinstance(spec, dict):
        return _split_val(_arrays_dataset(ARRAYS, _checked_arrays(spec)), val_split, seed)
    check_spec(spec)
    if spec == "mnist-sample":
        arrays = _read_npz(resources.files("kcompress") / "resources" / "mnist_sample.npz")
    elif spec == "mnist":
        arrays = _load_full_mnist()
    elif spec.startswith("keys:"):
        return _split_val(_keys_dataset(spec, generate_keys(*parse_keys_spec(spec))), val_split, seed)
    elif spec.startswith("keys-file:"):
        return _split_val(_keys_dataset(spec, read_keys_file(spec[len("keys-file:"):], strict_keys)), val_split, seed)
    else:
        arrays = _read_npz(spec)
    return _split_val(_arrays_dataset(spec, arrays), val_split, seed)


def check_spec(spec):
    """Exit 2 for a ``--data`` spec that cannot load, from its name and, for a file, its header (no array is
    read): cheap enough to run before TensorFlow loads."""
    require(isinstance(spec, str), f"--data: expected a dataset spec or a dict of numpy arrays, got {type(spec).__name__}")
    require(spec != ARRAYS, "--data: the model was made with numpy arrays given in Python, which were not saved; "
                            "give the data again (data=... or --data PATH.npz)")
    if spec.startswith("keys:"):
        parse_keys_spec(spec)
    elif spec.startswith("keys-file:"):
        require(os.path.isfile(spec[len("keys-file:"):]), f"--data keys-file: file not found: {spec[len('keys-file:'):]}")
    elif spec.endswith(".npz"):
        with _npz(spec):
            pass
    else:
        require(spec in ("mnist-sample", "mnist"),
                f"unknown --data {spec!r}: use mnist-sample, mnist, keys:DIST:N, keys-file:PATH or a PATH.npz")


def _read_npz(path):
    with _npz(path) as z:
        try:
            return _used_arrays(str(path), {k: z[k] for k in z.files})
        except Exception as e:  # a damaged member
            raise UsageError(f"--data {path}: not a readable npz file ({e.__class__.__name__}: {e})") from None


@contextlib.contextmanager
def _npz(path):
    """The open npz ``path``, its members checked (exit 2 if it is missing, not an npz or lacks an array)."""
    path = str(path)
    require(os.path.isfile(path), f"--data: file not found: {path}")
    with open(path, "rb") as f:
        require(f.read(4) == b"PK\x03\x04", f"--data {path}: not an npz file (an npz is a zip of .npy arrays, "
                                              "as numpy.savez writes it)")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # zip/format errors from numpy
        raise UsageError(f"--data {path}: not a readable npz file ({e.__class__.__name__}: {e})") from None
    with z:
        missing = [k for k in REQUIRED_ARRAYS if k not in z.files]
        require(not missing, f"--data {path}: npz lacks array(s) {', '.join(missing)}")
        yield z


def _checked_arrays(arrays):
    """A dict of numpy arrays in the npz layout (Python's ``data=``), its keys checked."""
    missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
    require(not missing, f"data: the dict lacks {', '.join(missing)} (the npz layout: x_train, y_train, x_test, y_test)")
    return _used_arrays("arrays", {k: np.asarray(v) for k, v in arrays.items()})


def _used_arrays(name, arrays):
    """The arrays kcompress reads (x/y of train, test and val); any other is left out with a notice."""
    extra = sorted(set(arrays) - set(USED_ARRAYS))
    if extra:
        print(f"kcompress: notice: --data {name}: ignoring array(s) {', '.join(extra)} (kcompress reads "
              f"{', '.join(USED_ARRAYS)})", file=sys.stderr)
    return {k: v for k, v in arrays.items() if k in USED_ARRAYS}


def _load_full_mnist():
    """Full MNIST through Keras' loader: it reads ~/.keras/datasets/mnist.npz when cached."""
    from kcompress.backend import keras  # TensorFlow loads only when work needs it

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as e:
        raise UsageError(
            f"--data mnist: not in Keras' cache (~/.keras/datasets/mnist.npz) and could not download it ({e})"
        ) from None
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def _arrays_dataset(name, a):
    a, info = _one_hot_to_classes(name, a)
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
        _check_classes(name, y_train, num_classes)
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
        info=info,
    )


def _check_classes(name, y, num_classes):
    """Exit 2 unless the labels are the classes 0…K−1: a stray label (999 among 0–2) would make a
    thousand-output model; a class of the K may lack training examples, most may not."""
    seen = np.unique(y)
    require(seen[0] >= 0, f"--data {name}: y_train has labels out of range (negative: {seen[0]}); classes are 0…K−1")
    missing = num_classes - len(seen)
    require(missing <= max(1, num_classes // 10),
            f"--data {name}: y_train's labels are not the classes 0…K−1: {len(seen)} distinct labels up to "
            f"{num_classes - 1} leave {missing} classes without an example (labels: "
            f"{', '.join(map(str, seen[:6]))}{', …' if len(seen) > 6 else ''}); renumber them 0…{len(seen) - 1}")


def _one_hot_to_classes(name, a):
    """One-hot label rows (0/1, exactly one 1) become class indices, said in ``info``: Keras users
    keep both forms, and one-hot rows read as float targets would train a regression."""
    ys = [k for k in a if k.startswith("y_")]
    if not all(_is_one_hot(a[k]) for k in ys):
        return a, {}
    converted = {k: np.argmax(a[k], axis=1).astype(np.int64) for k in ys}
    print(f"kcompress: notice: --data {name}: one-hot labels ({a['y_train'].shape[1]} columns) read as class indices",
          file=sys.stderr)
    return {**a, **converted}, {"labels": "one-hot, read as class indices"}


def _is_one_hot(y):
    """True for a 2-D array of 0/1 rows with exactly one 1 each (at least two columns)."""
    if y.ndim != 2 or y.shape[1] < 2 or not np.issubdtype(y.dtype, np.number) or len(y) == 0:
        return False
    return bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))


def binary_targets(ds):
    """``ds`` with float targets that are all 0 or 1 read as two classes (for a one-sigmoid model);
    other targets stay as they are."""
    splits = (ds.y_train, ds.y_val, ds.y_test)
    if any(y.size and not np.all((y == 0) | (y == 1)) for y in splits) or ds.y_train.size == 0:
        return ds
    flat = [np.asarray(y).reshape(len(y), -1)[:, 0].astype(np.int64) for y in splits]
    ds.y_train, ds.y_val, ds.y_test = flat
    ds.task, ds.num_classes = "classification", 2
    ds.info = {**ds.info, "labels": "0/1 targets read as two classes"}
    return ds


def _check_arrays(name, a):
    """Refuse arrays that would train silently into nonsense: non-finite values in any
    split, and labels of another kind (integer classes vs float targets) than y_train's."""
    for k in sorted(k for k in a if k[:2] in ("x_", "y_")):
        require(np.issubdtype(a[k].dtype, np.number), f"--data {name}: {k} has non-numeric dtype {a[k].dtype}")
        require(not np.issubdtype(a[k].dtype, np.complexfloating),
                f"--data {name}: {k} holds complex numbers ({a[k].dtype}); give real features (e.g. real and "
                "imaginary parts as two columns)")
        require(not k.startswith("x_") or a[k].ndim >= 2, f"--data {name}: {k} has shape {a[k].shape}: features "
                                                           "need one row per sample (shape (N, features...)); "
                                                           "use x.reshape(-1, 1) for one feature")
        if np.issubdtype(a[k].dtype, np.inexact):
            with np.errstate(over="ignore", invalid="ignore"):
                as_seen = a[k].astype(np.float32)  # the values as the model will see them
            bad = int(as_seen.size - np.count_nonzero(np.isfinite(as_seen)))
            require(bad == 0, f"--data {name}: {k} holds {bad} value(s) of {a[k].size} that are not finite in "
                              f"float32 (NaN, inf, or beyond ±3.4e38)")
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
