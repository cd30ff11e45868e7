"""The one place that imports TensorFlow and Keras.

``keras`` is tf_keras (the Keras 2 API), which tfmot 0.8.1 requires. Every other module
does ``from kcompress.backend import keras, tf``.
"""
import kcompress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras

tf.get_logger().setLevel("ERROR")

__all__ = ["keras", "tf", "set_seed"]


def set_seed(seed):
    """Seed Python, numpy and TensorFlow so that a run with the same seed repeats."""
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
