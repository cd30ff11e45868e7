"""Batch-norm statistics measured again after the weights before them were replaced (LC's Δ(Θ))."""
import numpy as np

from kcompress.backend import keras
from kcompress.core.batchnorm import recalibrate


def test_moving_statistics_become_those_of_the_inputs_layer_after_layer():
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 1, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Dense(2, use_bias=False, name="dense")(x)
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn2")(x))
    rng = np.random.default_rng(0)
    images = rng.normal(3.0, 2.0, (600, 4, 4, 2)).astype(np.float32)
    kernel = np.array([[[[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]]], np.float32)  # channel 3 = 2·c1 − c2
    model.get_layer("conv").set_weights([kernel])
    model.get_layer("dense").set_weights([np.eye(3, 2, dtype=np.float32)])

    assert recalibrate(model, images, samples=500) == ["bn1", "bn2"]
    first = images[:500].reshape(-1, 2)
    conv = np.stack([first[:, 0], first[:, 1], 2 * first[:, 0] - first[:, 1]], axis=1)
    bn1 = model.get_layer("bn1")
    np.testing.assert_allclose(bn1.moving_mean.numpy(), conv.mean(0), rtol=1e-4)
    np.testing.assert_allclose(bn1.moving_variance.numpy(), conv.var(0), rtol=1e-4)
    # bn2 sees bn1's output with the new statistics: each channel of mean 0 and variance 1 (ε = 1e-3 aside)
    np.testing.assert_allclose(model.get_layer("bn2").moving_mean.numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(model.get_layer("bn2").moving_variance.numpy(), conv.var(0)[:2] / (conv.var(0)[:2] + 1e-3),
                               rtol=1e-4)
