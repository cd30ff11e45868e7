"""What a model costs to ship: the bytes of each deployable file, raw and gzip'd.

Storage bits (:mod:`kcompress.core.stats`) say what an ideal encoding of the weights would take;
a deployment engineer ships a file. Every TFLite variant (float32, float32 with the sparse encoding,
dynamic-range, float16, full-integer int8, int8 with the sparse encoding) and the ONNX file are
converted and measured, once per architecture, weights and TensorFlow version (the measurement
cache, :mod:`kcompress.core.cache`). A format the converter refuses for a model is left out with
its reason, never the whole measurement.
"""
import numpy as np

from kcompress.backend import tf
from kcompress.core.cache import remembered
from kcompress.core.stats import weights_digest
from kcompress.deploy.convert import gzip_size, to_onnx, to_tflite
from kcompress.deploy.settings import TFLITE_MODES

VARIANTS = tuple(f"tflite-{m}" for m in TFLITE_MODES) + ("onnx",)
SAMPLE = 200  # calibration inputs of the int8 files, as ``export`` takes them


def calibration_sample(x_train, seed=0):
    """The training inputs that calibrate an int8 file (the same draw as ``export``'s)."""
    idx = np.random.default_rng(seed).choice(len(x_train), min(SAMPLE, len(x_train)), replace=False)
    return x_train[idx]


def convert(model, variant, representative):
    """The bytes of ``model``'s file in ``variant`` (one of :data:`VARIANTS`)."""
    if variant == "onnx":
        return to_onnx(model)
    return to_tflite(model, variant.removeprefix("tflite-"), representative=representative)


def deployed_sizes(model, representative, variants=VARIANTS):
    """``{variant: {"bytes", "gzip_bytes"}}`` of each deployable file of ``model`` (int8 calibrated on
    ``representative``); a variant that cannot be converted maps to ``{"error": reason}``."""
    def measure():
        sizes = {}
        for variant in variants:
            try:
                blob = convert(model, variant, representative)
            except Exception as e:  # a converter's refusal of one format is a finding, not a failure
                sizes[variant] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
                continue
            sizes[variant] = {"bytes": len(blob), "gzip_bytes": gzip_size(blob)}
        return sizes

    key = {"model": model.to_json(), "weights_sha1": weights_digest(model.get_weights()),
           "sample_sha1": weights_digest([np.asarray(representative, np.float32)]), "variants": list(variants),
           "tensorflow": tf.__version__}
    return remembered("deployed-sizes", key, measure)


def smallest(sizes, key="gzip_bytes"):
    """``(variant, bytes)`` of the smallest measured file by ``key`` (``gzip_bytes`` or ``bytes``)."""
    measured = [(v, s[key]) for v, s in sizes.items() if key in s]
    return min(measured, key=lambda vs: vs[1]) if measured else (None, None)


def deployed_columns(model, x_train, folder=None):
    """The report's file columns of ``model``: the smallest gzip'd file and its format, the smallest raw
    file and its format, and the int8 file's gzip'd bytes. A TFLite file that the method itself wrote
    into its ``folder`` (``model_int8.tflite`` of quantization-aware training) replaces the converted one."""
    sizes = dict(deployed_sizes(model, calibration_sample(x_train)))
    for path in sorted(folder.glob("model_*.tflite")) if folder else ():
        blob = path.read_bytes()
        sizes[f"tflite-{path.stem.removeprefix('model_')}"] = {"bytes": len(blob), "gzip_bytes": gzip_size(blob)}
    gz_variant, gz = smallest(sizes, "gzip_bytes")
    raw_variant, raw = smallest(sizes, "bytes")
    return {"deployed_gzip_bytes": gz, "deployed_gzip_file": gz_variant, "deployed_bytes": raw,
            "deployed_file": raw_variant, "int8_gzip_bytes": sizes.get("tflite-int8", {}).get("gzip_bytes"),
            "files": sizes}
