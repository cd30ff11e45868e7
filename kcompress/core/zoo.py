"""The model zoo: the reference architectures of the compression literature.

Every model outputs logits (classification) or raw values (regression); softmax is part of
the loss, so that teacher-mode regression and exports see the same numbers. Layers are
named ``conv_i``, ``bn_i`` and ``dense_i`` (counted from 1) so that tasks and ``--layers``
can name them.
"""
from kcompress.backend import keras
from kcompress.core.modelspec import ACTIVATIONS, MODEL_NAMES, ZOO_DEFAULT_HIDDEN
from kcompress.errors import require


def build_model(name, input_shape, output_dim, hidden=None, activation="relu"):
    """Build zoo model ``name`` for inputs of ``input_shape`` and ``output_dim`` outputs.

    ``index64`` follows the learned-index setup: weights *and* biases drawn from
    RandomNormal(0, 0.05) (other models: Glorot weights, zero biases) and a LeakyReLU(0.05)
    output, so that a position below 0 still has a gradient.
    """
    require(name in MODEL_NAMES, f"unknown --model {name!r} (one of {', '.join(MODEL_NAMES)})")
    require(activation in ACTIVATIONS, f"unknown --activation {activation!r} (one of {', '.join(ACTIVATIONS)})")
    hidden = ZOO_DEFAULT_HIDDEN[name] if hidden is None else tuple(hidden)
    act = keras.layers.LeakyReLU(0.01) if activation == "leaky_relu" else activation
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    _check_image_side(name, input_shape)
    x = {"lenet300": _mlp_trunk, "index64": _mlp_trunk, "lenet5": _lenet5_trunk, "convnet": _convnet_trunk}[name](
        inputs, act
    )
    def init():  # a fresh initializer per layer, so that layers do not get identical weights
        return keras.initializers.RandomNormal(0.0, 0.05) if name == "index64" else "glorot_uniform"

    def bias_init():  # index64: biases drawn like the weights, as in the learned-index setup
        return init() if name == "index64" else "zeros"

    for i, width in enumerate(hidden, start=1):
        x = keras.layers.Dense(width, activation=act, kernel_initializer=init(), bias_initializer=bias_init(),
                               name=f"dense_{i}")(x)
    out_name = f"dense_{len(hidden) + 1}"
    if name == "index64":
        x = keras.layers.Dense(output_dim, kernel_initializer=init(), bias_initializer=bias_init(), name=out_name)(x)
        outputs = keras.layers.LeakyReLU(0.05, name="output")(x)
    else:
        outputs = keras.layers.Dense(output_dim, name=out_name)(x)
    return keras.Model(inputs, outputs, name=name)


# The smallest image side each conv trunk takes: lenet5 pools twice around a 5×5 valid conv
# (12 → 6 → 2 → 1), convnet pools twice (4 → 2 → 1).
MIN_IMAGE_SIDE = {"lenet5": 12, "convnet": 4}


def _check_image_side(name, input_shape):
    """Exit 2 when the images are too small for ``name``'s convolutions and poolings, naming what fits."""
    side = MIN_IMAGE_SIDE.get(name)
    if side is None or len(input_shape) not in (2, 3):
        return
    h, w = input_shape[:2]
    fits = [m for m in MODEL_NAMES if m != "index64" and MIN_IMAGE_SIDE.get(m, 0) <= min(h, w)]
    require(min(h, w) >= side, f"--model {name} needs images of at least {side}×{side}, got {h}×{w} "
                               f"(models that fit: {', '.join(fits)})")


def _mlp_trunk(x, act):
    return keras.layers.Flatten(name="flatten")(x) if len(x.shape) > 2 else x


def _as_image(x):
    require(len(x.shape) in (3, 4), f"this model needs image inputs (H, W[, C]), got shape {tuple(x.shape[1:])}")
    if len(x.shape) == 3:
        x = keras.layers.Reshape(tuple(x.shape[1:]) + (1,), name="to_image")(x)
    return x


def _lenet5_trunk(x, act):
    x = _as_image(x)
    x = keras.layers.Conv2D(6, 5, padding="same", activation=act, name="conv_1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool_1")(x)
    x = keras.layers.Conv2D(16, 5, activation=act, name="conv_2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool_2")(x)
    return keras.layers.Flatten(name="flatten")(x)


def _convnet_trunk(x, act):
    """A small conv net with batch-norm (conv → BN → activation), for channel pruning."""
    x = _as_image(x)
    for i, filters in enumerate((16, 32), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv_{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.Activation(act, name=f"act_{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    return keras.layers.Flatten(name="flatten")(x)
