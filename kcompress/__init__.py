"""kcompress: compress any Keras (tf-keras) model — prune, share weights, Learning-Compression,
the α-schedule, pruner masks — and export it to TFLite and ONNX with a check that the file still
computes what the Keras model computes.

    import kcompress
    result = kcompress.compress("my.keras", "prune", data="my.npz", sparsity=0.8)
    result.model, result.metrics, result.reference_metrics, result.compression["total"]["bits_ratio"]
    kcompress.export(result.model, "exported/p80", data="my.npz")["passed"]

Functions (each also a ``kcompress`` subcommand, with the same settings as keyword arguments):
``load``, ``import_model``, ``train``, ``evaluate``, ``compress`` (returns a :class:`Result`),
``export``, ``report``, ``tune``, ``demo``. ``help(kcompress.compress)`` documents each; ``kcompress
compress --method NAME --help`` lists a method's settings with their defaults.

The package forces the Keras 2 API (tf-keras) before TensorFlow is first imported: tfmot only
supports tf_keras. Import TensorFlow and Keras through ``kcompress.backend``. The functions live in
:mod:`kcompress.api` and are loaded on first use, so that ``import kcompress`` stays cheap.
TensorFlow's own log lines are off unless ``KCOMPRESS_VERBOSE=1`` (the CLI's ``--verbose``).
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if os.environ.get("KCOMPRESS_VERBOSE") == "1" else "3")
os.environ.setdefault("GLOG_minloglevel", "2")

__version__ = "0.1.0"

__all__ = ["Result", "load", "import_model", "train", "evaluate", "compress", "export", "report", "tune", "demo"]


def __getattr__(name):
    if name in __all__:
        from kcompress import api

        return getattr(api, name)
    raise AttributeError(f"module 'kcompress' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
