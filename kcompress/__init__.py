"""kcompress: train, tune, compress and export Keras models.

The package forces the Keras 2 API (tf-keras) before TensorFlow is first imported:
tfmot only supports tf_keras. Import TensorFlow and Keras through ``kcompress.backend``.

The user-facing functions (``train``, ``evaluate``, ``compress``, ``export``, ``tune``,
``demo``) live in :mod:`kcompress.api` and are re-exported here lazily, so that
``import kcompress`` stays cheap until one of them is used. TensorFlow's own log lines are
off unless ``KCOMPRESS_VERBOSE=1`` (the CLI's ``--verbose``).
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if os.environ.get("KCOMPRESS_VERBOSE") == "1" else "3")
os.environ.setdefault("GLOG_minloglevel", "2")

__version__ = "0.1.0"

_API = ("train", "evaluate", "compress", "export", "tune", "demo")


def __getattr__(name):
    if name in _API:
        from kcompress import api

        return getattr(api, name)
    raise AttributeError(f"module 'kcompress' has no attribute {name!r}")
