"""Conversion of a plain Keras model to deployable bytes: TFLite variants and ONNX.

TFLite modes: ``float32``; ``dynamic`` (dynamic-range: int8 weights, float activations);
``float16`` (float16 weights); ``int8`` (full-integer with int8 input/output, calibrated on a
representative sample of training inputs). ONNX through tf2onnx with an explicit input
signature (tf2onnx needs it for Keras models), checked with ``onnx.checker``. A quantization-aware
model (tfmot's wrappers, ``--method qat``) converts as it is: in ``int8`` its fake-quant ranges give the
scales and the sample calibrates only the layers it left in float; tf2onnx turns them into
QuantizeLinear/DequantizeLinear pairs.
"""
import gzip

import numpy as np

from kcompress.backend import quiet_stderr, tf
from kcompress.core.cache import remembered
from kcompress.core.stats import weights_digest
from kcompress.errors import require
from kcompress.deploy.settings import DEFAULT_OPSET, TFLITE_MODES


def input_signature(model):
    """A one-input signature with a free batch dimension, named ``input``."""
    require(len(model.inputs) == 1, "export supports single-input models")
    shape = (None,) + tuple(model.inputs[0].shape[1:])
    return (tf.TensorSpec(shape, tf.float32, name="input"),)


def to_tflite(model, mode="float32", representative=None):
    """TFLite flatbuffer bytes of ``model`` in ``mode``; int8 needs ``representative`` inputs. The
    ``-sparse`` modes store pruned weights in TFLite's sparse encoding (``EXPERIMENTAL_SPARSITY``):
    smaller raw files where kernels are mostly zeros; gzip already squeezes the zeros of a dense file."""
    require(mode in TFLITE_MODES, f"unknown TFLite mode {mode!r} (one of {', '.join(TFLITE_MODES)})")
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(*input_signature(model))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    base, sparse = mode.removesuffix("-sparse"), mode.endswith("-sparse")
    converter.optimizations = ([tf.lite.Optimize.DEFAULT] if base != "float32" else []) + \
        ([tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else [])
    if base == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif base == "int8":
        require(representative is not None, "int8 TFLite export needs a representative sample")
        sample = np.asarray(representative, np.float32)
        converter.representative_dataset = lambda: ([sample[i : i + 1]] for i in range(len(sample)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with quiet_stderr():  # the converter's C++ notices ("fully_quantize: 0, inference_type: 6 ...")
        return converter.convert()


def to_onnx(model, opset=DEFAULT_OPSET):
    """ONNX model bytes of ``model`` at ``opset``, validated by ``onnx.checker``."""
    import onnx  # a converter, loaded only to export
    import tf2onnx

    require(7 <= int(opset) <= 21, f"--opset must be between 7 and 21, got {opset}")
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=input_signature(model), opset=int(opset))
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def gzip_size(blob):
    """Size of ``blob`` after gzip at maximum compression: what a download really costs."""
    return len(gzip.compress(blob, compresslevel=9, mtime=0))


def tflite_size(model):
    """Bytes and gzip'd bytes of ``model``'s float32 TFLite file, with the digest of the weights
    they were measured on (``weights_sha1``). Converted once per architecture, weights and
    TensorFlow version: later commands read it from the measurement cache (:mod:`kcompress.core.cache`)."""
    digest = weights_digest(model.get_weights())

    def measure():
        blob = to_tflite(model, "float32")
        return {"tflite_bytes": len(blob), "tflite_gzip_bytes": gzip_size(blob)}

    key = {"model": model.to_json(), "weights_sha1": digest, "tensorflow": tf.__version__}
    return {**remembered("tflite-size", key, measure), "weights_sha1": digest}
