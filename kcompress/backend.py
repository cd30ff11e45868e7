"""The one place that imports TensorFlow and Keras.

``keras`` is tf_keras (the Keras 2 API), which tfmot 0.8.1 requires. Every other module
does ``from kcompress.backend import keras, tf``.

TensorFlow's C++ start-up lines (oneDNN notice, CUDA stub, ``cuInit`` error on a CPU machine)
are written to the process's stderr before its own log settings apply, so they are hidden by
pointing file descriptor 2 at /dev/null while TensorFlow loads and first lists its devices;
``--verbose`` (``KCOMPRESS_VERBOSE=1``) shows them.

XLA's compiled training steps persist between commands (:func:`_xla_cache`): the first ``fit``
of LeNet-300-100 under XLA spends 1.7-3.8 s compiling, which every later command
on the same architecture and batch shape then skips.
"""
import contextlib
import os
import sys

import kcompress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from kcompress.core import cache


@contextlib.contextmanager
def quiet_stderr():
    """Send what C++ code writes to stderr to /dev/null for the block (unless verbose): TensorFlow's
    start-up lines here, the TFLite converter's and LiteRT's notices in :mod:`kcompress.deploy`."""
    if os.environ.get("KCOMPRESS_VERBOSE") == "1":
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


XLA_CACHE_LIMIT = 256 * 2**20  # bytes; one LeNet-300-100 step is ~240 KiB


def _xla_cache():
    """Point TensorFlow's persistent XLA cache at ``$KCOMPRESS_XLA_CACHE`` (default
    ``~/.cache/kcompress/xla``; empty: no cache), trimmed to :data:`XLA_CACHE_LIMIT` by dropping
    the least recently written files. XLA keys each entry by a fingerprint of the computation,
    so a changed model never reuses another's code. A folder that cannot be written means no
    cache, nothing else."""
    folder = os.environ.get("KCOMPRESS_XLA_CACHE", os.path.join(cache.root(), "xla"))
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if not folder or "tf_xla_persistent_cache_directory" in flags:
        return
    try:
        os.makedirs(folder, exist_ok=True)
        cache.trim(folder, XLA_CACHE_LIMIT)
    except OSError:
        return
    os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()


_xla_cache()

with quiet_stderr():
    import tensorflow as tf
    import tf_keras as keras

    tf.config.list_physical_devices()

tf.get_logger().setLevel("ERROR")

__all__ = ["keras", "tf", "set_seed", "quiet_stderr"]


def set_seed(seed):
    """Seed Python, numpy and TensorFlow so that a run with the same seed repeats."""
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
