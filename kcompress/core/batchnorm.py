"""Batch-norm statistics measured again after a model's weights were replaced.

A batch-norm layer normalises with the moving mean and variance of the activations it saw in
training. When a method writes other weights into the layers before it (LC's Δ(Θ): quantized or
pruned kernels that were never trained as such), those statistics describe activations that no
longer occur, and the model's error can jump by tens of points. :func:`recalibrate` sets each
layer's moving mean and variance to those of its inputs on training samples, layer after layer in
the graph's order (each layer sees the inputs of the layers before it as already corrected).
The learned scale and shift are not touched: no weight a method chose is changed.
"""
import numpy as np

from kcompress.backend import keras

SAMPLES = 2000  # training inputs the statistics are measured on


def recalibrate(model, x, samples=SAMPLES, batch_size=500):
    """Set the moving statistics of every batch-norm layer of ``model`` (called once) to those of its
    inputs on the first ``samples`` of ``x``. Returns the names of the layers recalibrated."""
    done = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        probe = keras.Model(model.inputs, layer.input)
        inputs = probe.predict(x[:samples], batch_size=batch_size, verbose=0)
        axes = tuple(i for i in range(inputs.ndim) if i not in _axes(layer, inputs.ndim))
        layer.moving_mean.assign(np.mean(inputs, axis=axes).reshape(layer.moving_mean.shape))
        layer.moving_variance.assign(np.var(inputs, axis=axes).reshape(layer.moving_variance.shape))
        done.append(layer.name)
    return done


def _axes(layer, ndim):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return {a % ndim for a in axis}
