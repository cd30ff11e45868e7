"""Model surgery: rebuild a model with some layers replaced, copied or changed.

Compression methods that change a model's structure — factorising a layer into two (LC low
rank), putting a parallel branch beside a layer (α-schedule), removing pruned units (pruner
masks) — all rebuild the model layer by layer. :func:`rebuild` does that once for the
chain-shaped models of the zoo (each layer feeds the next), so no method touches Keras
graph internals itself. Rebuilt models get fresh layer objects: the source stays unchanged.
"""
from kcompress.backend import keras
from kcompress.errors import require


def clone(model):
    """A fresh copy of ``model`` with the same weights (methods never touch the reference)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def chain_layers(model):
    """The layers of ``model`` after its input, checking that each one feeds the next."""
    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    prev = model.inputs[0]
    for layer in layers:
        require(len(layer._inbound_nodes) == 1 and layer.input is prev,
                f"model surgery supports chain-shaped models; layer {layer.name!r} does not follow the previous one")
        prev = layer.output
    return layers


def copy_layer(layer, weights=None, **config):
    """A new layer like ``layer`` with ``config`` changes; ``weights`` (default: the layer's own,
    when the config is unchanged) are set when the copy is first called via :func:`apply`."""
    new = type(layer).from_config({**layer.get_config(), **config})
    new._kc_weights = layer.get_weights() if weights is None and not config else weights
    return new


def apply(layer, x):
    """Call ``layer`` on ``x`` and then set the weights a :func:`copy_layer` copy carries."""
    y = layer(x)
    pending = getattr(layer, "_kc_weights", None)
    if pending is not None:
        layer.set_weights(pending)
        del layer._kc_weights
    return y


def rebuild(model, replace=None, name=None):
    """A new model computing ``model`` with some layers replaced.

    ``replace`` maps a layer name to ``fn(layer, x) -> y``, which builds whatever should stand
    in that layer's place on input tensor ``x`` (use :func:`copy_layer` and :func:`apply` to
    keep weights). Every other layer is copied with its weights.
    """
    replace = replace or {}
    layers = chain_layers(model)
    unknown = set(replace) - {l.name for l in layers}
    require(not unknown, f"no layer named {', '.join(sorted(unknown))} in model {model.name!r}")
    inputs = keras.Input(shape=tuple(model.inputs[0].shape[1:]), name=model.inputs[0].name.split(":")[0])
    x = inputs
    for layer in layers:
        x = replace[layer.name](layer, x) if layer.name in replace else apply(copy_layer(layer), x)
    return keras.Model(inputs, x, name=name or model.name)
