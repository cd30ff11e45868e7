"""Parallel branches for the α-schedule: a narrower twin beside a layer, blended by α.

Every prunable layer (Dense or Conv2D) gets a *branch* with the same input and output
shape but ``prune`` fewer parameters, made of two layers:

- Dense(m → n):   Dense(r, linear, no bias) → Dense(n, the layer's activation, its bias);
- Conv2D(k×k, c → n): Conv2D(r, k×k, same strides/padding/dilation, linear, no bias)
  → Conv2D(n, 1×1, the layer's activation and bias).

A Conv2D whose output reaches a 2×2 max-pool through element-wise layers only (batch-norm,
activation) gets a *pooled* branch: the narrow conv runs at stride 2 — the resolution the
pool keeps — and a nearest-neighbour UpSampling2D(2) restores the layer's output shape. At
α = 0 upsampling and pooling cancel exactly (every 2×2 block holds one value, so the pool
returns it whatever the element-wise layers did to it), and :func:`strip_model` drops both:
the branch then computes a quarter of the positions, which is where a small conv net spends
its time (full-resolution convolutions and pooling; a narrower channel count alone does not
pay off in onnxruntime, which pads channels to blocks of 8–16). See :func:`pooled_convs`.

Both cost ``r · (fan_in + n) + bias`` parameters (``fan_in`` = m, or k·k·c), so the rank
``r`` is the integer nearest to ``(keep · original − bias) / (fan_in + n)`` (at least 1).
That hits the target within 1 % whenever one unit of r costs at most 2 % of the target (at
prune 0.65: LeNet-300-100's dense_1 and dense_2, 0.3 % off; the conv net's dense_1, 0.9 %);
smaller layers land within half a rank step (the conv net's conv_2: r = 9, 1.8 % under).
:func:`branch_rank` reports the real count. The narrow layer has no bias because the
projection's bias absorbs it. Branch layers are He-initialised.

:func:`blend_model` puts the branches beside the layers with a :class:`Blend` layer,
``α · layer(x) + (1 − α) · branch(x)`` (by default of the pre-activations, the layer's
activation applied after the blend; either way α = 1 is the original and α = 0 the
branch), whose α is a non-trainable variable that :func:`set_alpha` assigns between
training runs (no rebuild, no recompile needed).
:func:`strip_model` removes the originals at α = 0: the result is a plain Keras model.
"""
import numpy as np

from kcompress.backend import keras
from kcompress.core.surgery import Graph, apply, copy_layer, outputs_of, rebuild, tensor_key
from kcompress.errors import require

NARROW, PROJ, UP, BLEND, ACT = "_narrow", "_proj", "_up", "_blend", "_act"
ELEMENTWISE = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU")  # at inference


@keras.utils.register_keras_serializable("kcompress")
class Blend(keras.layers.Layer):
    """``α · original + (1 − α) · branch`` of its two inputs, α a non-trainable variable."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_alpha = float(alpha)

    def build(self, input_shape):
        self.alpha = self.add_weight(
            "alpha", shape=(), initializer=keras.initializers.Constant(self.initial_alpha), trainable=False
        )
        super().build(input_shape)

    def call(self, inputs):
        original, branch = inputs
        return self.alpha * original + (1.0 - self.alpha) * branch

    def get_config(self):
        return {**super().get_config(), "alpha": float(self.alpha.numpy()) if self.built else self.initial_alpha}


def layer_params(layer):
    """Parameters of a Dense/Conv2D ``layer``: kernel plus bias."""
    return int(np.prod(layer.kernel.shape)) + (int(layer.bias.shape[0]) if layer.use_bias else 0)


def layer_macs(layer):
    """Multiply-adds of a Dense/Conv2D ``layer`` per example: kernel size × output positions."""
    positions = int(np.prod(layer.output.shape[1:-1])) if len(layer.output.shape) > 2 else 1
    return int(np.prod(layer.kernel.shape)) * positions


def branch_rank(layer, prune):
    """``(r, branch_params)``: the bottleneck rank whose branch has ``(1 − prune)`` of
    ``layer``'s parameters, as near as an integer rank allows."""
    fan_in, out = int(np.prod(layer.kernel.shape[:-1])), int(layer.kernel.shape[-1])
    bias = out if layer.use_bias else 0
    target = (1.0 - prune) * layer_params(layer)
    r = max(1, int(round((target - bias) / (fan_in + out))))
    return r, branch_params(layer, r)


def branch_params(layer, rank):
    """Parameters of ``layer``'s branch at ``rank``: ``rank · (fan_in + n)`` plus the projection's bias."""
    fan_in, out = int(np.prod(layer.kernel.shape[:-1])), int(layer.kernel.shape[-1])
    return rank * (fan_in + out) + (out if layer.use_bias else 0)


def _pool_after(graph, node):
    """The layer that the output of ``node`` reaches through element-wise layers, each the only
    reader of the one before (a branch elsewhere would see the upsampled values), or None."""
    while True:
        key = tensor_key(outputs_of(node)[0])
        readers = graph.consumers.get(key, [])
        if key in graph.outputs or len(readers) != 1 or graph.calls[readers[0].layer.name] != 1:
            return None
        node = readers[0]
        if type(node.layer).__name__ not in ELEMENTWISE:
            return node.layer


def pooled_convs(model):
    """``{conv: pool}``: the Conv2D layers (stride 1) whose output reaches a 2×2, stride-2
    max-pool through element-wise layers only, with an even output height and width, each with
    that pool: their branch can run at stride 2 (the pool leaves one value per 2×2 block anyway)."""
    graph, found = Graph(model), {}
    for node in graph.nodes:
        layer = node.layer
        if type(layer).__name__ != "Conv2D" or graph.calls[layer.name] != 1:
            continue
        cfg = layer.get_config()
        if tuple(cfg["strides"]) != (1, 1) or tuple(cfg["dilation_rate"]) != (1, 1) \
                or cfg["data_format"] != "channels_last" or any(d % 2 for d in layer.output.shape[1:3]):
            continue
        nxt = _pool_after(graph, node)
        if type(nxt).__name__ == "MaxPooling2D":
            pool = nxt.get_config()
            if tuple(pool["pool_size"]) == (2, 2) and tuple(pool["strides"]) == (2, 2) and pool["padding"] == "valid":
                found[layer.name] = nxt.name
    return found


def branch_layers(layer, rank, weights=(None, None), pooled=False, **activation):
    """The new layers of ``layer``'s branch at ``rank`` (``weights``: to copy into them;
    ``activation=``: the projection's, if not the layer's own): narrow and projection, the
    narrow conv at stride 2 if ``pooled`` (then the caller upsamples or drops the pool)."""
    kind = type(layer).__name__
    require(kind in ("Dense", "Conv2D"), f"layer {layer.name!r} is a {kind}; the α-schedule handles Dense and Conv2D")
    cfg = {**layer.get_config(), **activation}
    he = dict(kernel_initializer="he_normal", bias_initializer="zeros")
    if kind == "Dense":
        narrow = keras.layers.Dense(rank, activation=None, use_bias=False, name=layer.name + NARROW, **he)
        proj = keras.layers.Dense(cfg["units"], activation=cfg["activation"], use_bias=cfg["use_bias"],
                                  name=layer.name + PROJ, **he)
    else:
        same = {k: cfg[k] for k in ("kernel_size", "strides", "padding", "dilation_rate", "data_format")}
        if pooled:
            same.update(strides=(2, 2))  # 'same' or 'valid': half the (even) output size either way
        narrow = keras.layers.Conv2D(rank, activation=None, use_bias=False, name=layer.name + NARROW, **same, **he)
        proj = keras.layers.Conv2D(cfg["filters"], 1, activation=cfg["activation"], use_bias=cfg["use_bias"],
                                   data_format=cfg["data_format"], name=layer.name + PROJ, **he)
    narrow._kc_weights, proj._kc_weights = weights
    return narrow, proj


def blend_model(model, ranks, alpha=1.0, before_activation=True, pooled=()):
    """``model`` with each layer named in ``ranks`` (name → r) blended with a new branch
    (at stride 2 and upsampled for the convs named in ``pooled``, see :func:`pooled_convs`).

    With ``before_activation`` the blend mixes the two paths' pre-activations and the
    layer's activation follows it (``act(α·(Wx + b) + (1 − α)·branch_linear(x))``), so the
    branch learns to stand in for the layer's affine map where the shared units are active;
    otherwise it mixes the two activated outputs. At α = 0 both give the same model.
    """

    def blended(layer, x):
        act = layer.get_config().get("activation") if before_activation else None
        linear = {"activation": "linear"} if act not in (None, "linear") else {}
        original = apply(copy_layer(layer, layer.get_weights(), **linear), x)
        narrow, proj = branch_layers(layer, ranks[layer.name], pooled=layer.name in pooled, **linear)
        branch = apply(proj, apply(narrow, x))
        if layer.name in pooled:
            branch = keras.layers.UpSampling2D(2, name=layer.name + UP)(branch)
        y = Blend(alpha, name=layer.name + BLEND)([original, branch])
        return keras.layers.Activation(act, name=layer.name + ACT)(y) if linear else y

    return rebuild(model, {name: blended for name in ranks})


def blend_layers(model):
    """The :class:`Blend` layers of a blended model."""
    return [l for l in model.layers if isinstance(l, Blend)]


def set_alpha(model, alpha):
    """Set α of every :class:`Blend` layer of ``model`` (takes effect in compiled steps too)."""
    for layer in blend_layers(model):
        layer.alpha.assign(float(alpha))


def freeze_original(blended, frozen=True):
    """Make every layer that came from the original model (not a branch) (non-)trainable, except
    batch-norm: a frozen batch-norm normalises with its old statistics (tf-keras runs it in inference
    mode), which no longer fit the blended activations (a residual CNN at α = 0.74: 35-52 % validation
    error instead of its 4.5 %)."""
    for layer in blended.layers:
        if not layer.name.endswith((NARROW, PROJ, UP, BLEND, ACT)):
            layer.trainable = not frozen or isinstance(layer, keras.layers.BatchNormalization)


def strip_model(original, blended):
    """The plain model at α = 0: ``original``'s structure with each blended layer replaced by
    its trained branch and every other layer carrying ``blended``'s (possibly trained) weights.
    A pooled branch loses its upsampling and the max-pool it fed loses its place: the two
    cancel exactly, so the result computes what ``blended`` computes at α = 0."""
    names = [l.name[: -len(BLEND)] for l in blend_layers(blended)]
    pooled = {n for n in names if any(l.name == n + UP for l in blended.layers)}

    def branch_only(layer, x):
        trained = (blended.get_layer(layer.name + NARROW), blended.get_layer(layer.name + PROJ))
        narrow, proj = branch_layers(layer, trained[0].kernel.shape[-1], [l.get_weights() for l in trained],
                                     pooled=layer.name in pooled)
        return apply(proj, apply(narrow, x))

    source = keras.models.clone_model(original)
    for layer in source.layers:
        if layer.weights and layer.name not in names:
            layer.set_weights(blended.get_layer(layer.name).get_weights())
    replace = {name: branch_only for name in names}
    replace.update({pool: lambda layer, x: x for conv, pool in pooled_convs(source).items() if conv in pooled})
    return rebuild(source, replace)
