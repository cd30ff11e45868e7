"""Models and data of a user's own making, which kcompress never trained: the graphs of the
"your model" tests (functional, residual, batch-norm, softmax/sigmoid/linear outputs, one-hot
labels). Small, so that each trains in seconds on 2 cores."""
from importlib import resources

import numpy as np

import kcompress  # noqa: F401  (tf-keras before TensorFlow)


def image_arrays(n_train=2000, n_test=1000, size=14):
    """A slice of the bundled MNIST sample, downsampled to ``size``×``size`` (float32 in [0, 1])."""
    with np.load(resources.files("kcompress") / "resources" / "mnist_sample.npz") as z:
        tr = np.random.default_rng(0).permutation(len(z["y_train"]))[:n_train]  # the sample is sorted by class
        te = np.random.default_rng(1).permutation(len(z["y_test"]))[:n_test]
        x_tr, y_tr, x_te, y_te = z["x_train"][tr], z["y_train"][tr], z["x_test"][te], z["y_test"][te]

    def shrink(x):
        x = x.astype(np.float32) / 255.0
        f = 28 // size
        return x[:, :f * size, :f * size].reshape(len(x), size, f, size, f).mean(axis=(2, 4))[..., None]

    return dict(x_train=shrink(x_tr), y_train=y_tr.astype(np.int64), x_test=shrink(x_te), y_test=y_te.astype(np.int64))


def save_npz(path, arrays):
    np.savez(path, **arrays)
    return str(path)


def residual_cnn(input_shape=(14, 14, 1), classes=10, softmax=True, width=8):
    """Conv stem → BN → ReLU, a residual block (two convs with BN, added to the stem's output),
    max-pool, a separable conv (depthwise + pointwise), GAP and a Dense head (softmax, or logits)."""
    from kcompress.backend import keras

    L = keras.layers

    def conv_bn(x, name, bn):
        return L.BatchNormalization(momentum=0.9, name=bn)(L.Conv2D(width, 3, padding="same", name=name)(x))

    x = inputs = keras.Input(input_shape, name="image")
    x = L.ReLU(name="stem_relu")(conv_bn(x, "stem", "stem_bn"))
    y = L.Activation("relu", name="b1_relu")(conv_bn(x, "b1_conv1", "b1_bn1"))
    y = conv_bn(y, "b1_conv2", "b1_bn2")
    x = L.ReLU(name="b1_out")(L.Add(name="b1_add")([x, y]))
    x = L.MaxPooling2D(name="pool")(x)
    x = L.SeparableConv2D(2 * width, 3, padding="same", activation="relu", name="sep")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.1, name="drop")(x)
    outputs = L.Dense(classes, activation="softmax" if softmax else None, name="head")(x)
    return keras.Model(inputs, outputs, name="residual_cnn")


def branchy_cnn(input_shape=(14, 14, 1), classes=10):
    """Every other kernel kind: a Conv2D and a DepthwiseConv2D side by side, concatenated, a
    Conv2DTranspose, reshaped to a sequence for a Conv1D, a DepthwiseConv1D and a SeparableConv1D,
    flattened into a Dense softmax head."""
    from kcompress.backend import keras

    L = keras.layers
    x = inputs = keras.Input(input_shape, name="image")
    x = L.Concatenate(name="cat")([L.Conv2D(6, 3, padding="same", activation="relu", name="conv")(x),
                                   L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)])
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Conv2DTranspose(8, 3, padding="same", activation="relu", name="deconv")(x)
    h, w = input_shape[0] // 2, input_shape[1] // 2
    x = L.Conv1D(8, 3, padding="same", activation="relu", name="conv1d")(L.Reshape((h * w, 8), name="seq")(x))
    x = L.DepthwiseConv1D(3, padding="same", name="dw1d")(x)
    x = L.SeparableConv1D(8, 3, strides=2, padding="same", activation="relu", name="sep1d")(x)
    outputs = L.Dense(classes, activation="softmax", name="head")(L.Flatten(name="flat")(x))
    return keras.Model(inputs, outputs, name="branchy_cnn")


def tabular_arrays(n=1200, features=12, seed=0):
    """A binary task on tabular features (labels 0/1)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = ((x[:, 0] + 0.5 * x[:, 1] * x[:, 2] - 0.3 * x[:, 3]) > 0).astype(np.int64)
    cut = n * 3 // 4
    return dict(x_train=x[:cut], y_train=y[:cut], x_test=x[cut:], y_test=y[cut:])


def sigmoid_mlp(features=12):
    """A binary classifier with one sigmoid output unit (Sequential)."""
    from kcompress.backend import keras

    return keras.Sequential([keras.Input((features,)), keras.layers.Dense(32, activation="relu", name="fc1"),
                             keras.layers.Dense(16, activation="relu", name="fc2"),
                             keras.layers.Dense(1, activation="sigmoid", name="out")], name="sigmoid_mlp")


def regression_arrays(n=1200, features=8, outputs=2, seed=0):
    """A smooth multi-output regression (float targets)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = np.stack([np.sin(x[:, 0]) + 0.5 * x[:, 1], x[:, 2] * x[:, 3] * 0.5 + 0.1 * x[:, 4]][:outputs], axis=1)
    cut = n * 3 // 4
    return dict(x_train=x[:cut], y_train=y[:cut].astype(np.float32), x_test=x[cut:], y_test=y[cut:].astype(np.float32))


def regression_mlp(features=8, outputs=2):
    """A functional regression MLP with a linear output."""
    from kcompress.backend import keras

    inputs = keras.Input((features,), name="x")
    h = keras.layers.Dense(48, activation="relu", name="fc1")(inputs)
    h = keras.layers.Dense(24, activation="relu", name="fc2")(h)
    return keras.Model(inputs, keras.layers.Dense(outputs, name="out")(h), name="regression_mlp")


def one_hot(arrays, classes=10):
    """``arrays`` with its labels as one-hot float rows."""
    eye = np.eye(classes, dtype=np.float32)
    return {**arrays, "y_train": eye[arrays["y_train"]], "y_test": eye[arrays["y_test"]]}


def trained(model, arrays, loss, epochs=3, lr=1e-2, batch_size=64, seed=0):
    """``model`` compiled with ``loss`` (Adam) and trained on ``arrays``, as a user would."""
    from kcompress.backend import keras, set_seed

    set_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    model.fit(arrays["x_train"], arrays["y_train"], epochs=epochs, batch_size=batch_size, verbose=0)
    return model
