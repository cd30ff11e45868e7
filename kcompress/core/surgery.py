"""Model surgery: rebuild a model with some layers replaced, copied or changed.

Compression methods that change a model's structure — factorising a layer into two (LC low
rank), putting a parallel branch beside a layer (α-schedule), removing pruned units (pruner
masks) — all rebuild the model layer by layer. :func:`rebuild` does that once for any
functional or Sequential graph (merges such as Add/Concatenate, tensors read by several layers,
several inputs and outputs), walking :class:`Graph`, so no method touches Keras graph
internals itself. Rebuilt models get fresh layer objects: the source stays unchanged.
"""
from collections import Counter

from kcompress.backend import keras, tf
from kcompress.errors import require


def clone(model):
    """A fresh copy of ``model`` with the same weights (methods never touch the reference)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def tensor_key(t):
    """A tensor of a Keras graph, by the layer call that made it (stable, unlike the object)."""
    h = t._keras_history
    return id(h.layer), h.node_index, h.tensor_index


def is_keras_tensor(value):
    """Whether ``value`` is a tensor of a Keras graph (not a constant argument of a call)."""
    return hasattr(value, "_keras_history")


def _node(t):
    h = t._keras_history
    return h.layer._inbound_nodes[h.node_index]


class Graph:
    """The layer calls (Keras nodes) of ``model`` in an order where each comes after those that
    make its inputs, found from the outputs back (iteratively: deep nets exceed Python's
    recursion limit); ``consumers`` maps a tensor to the calls that read it."""

    def __init__(self, model):
        for layer in model.layers:
            require(not isinstance(layer, keras.Model),
                    f"layer {layer.name!r} of model {model.name!r} is a nested model; flatten it into one graph first")
        starts = {tensor_key(t) for t in model.inputs}
        self.nodes, done = [], set()
        stack = [(_node(t), False) for t in reversed(model.outputs) if tensor_key(t) not in starts]
        while stack:
            node, ready = stack.pop()
            if id(node) in done:
                continue
            if ready:
                done.add(id(node))
                self.nodes.append(node)
                continue
            stack.append((node, True))
            stack.extend((_node(t), False) for t in node.keras_inputs if tensor_key(t) not in starts)
        self.consumers = {}
        for node in self.nodes:
            for t in node.keras_inputs:
                self.consumers.setdefault(tensor_key(t), []).append(node)
        self.calls = Counter(node.layer.name for node in self.nodes)
        self.outputs = {tensor_key(t) for t in model.outputs}

    def node(self, name):
        """The (first) call of the layer named ``name``."""
        return next(n for n in self.nodes if n.layer.name == name)


def outputs_of(node):
    """The output tensors of a layer call, flat."""
    return tf.nest.flatten(node.outputs)


def output_layers(model):
    """Names of the layers that make a model output, directly or through weightless one-input layers
    (an activation, dropout, a reshape): their output width is the model's."""
    found, stack = set(), [_node(t) for t in model.outputs]
    while stack:
        node = stack.pop()
        inputs = node.keras_inputs
        if node.layer.weights or len(inputs) != 1:
            found.add(node.layer.name)
        else:
            stack.append(_node(inputs[0]))
    return found


def copy_layer(layer, weights=None, **config):
    """A new layer like ``layer`` with ``config`` changes; ``weights`` (default: the layer's own,
    when the config is unchanged) are set when the copy is first called via :func:`apply`."""
    new = type(layer).from_config({**layer.get_config(), **config})
    new._kc_weights = layer.get_weights() if weights is None and not config else weights
    return new


def apply(layer, x, *args, **kwargs):
    """Call ``layer`` on ``x`` and then set the weights a :func:`copy_layer` copy carries."""
    y = layer(x, *args, **kwargs)
    pending = getattr(layer, "_kc_weights", None)
    if pending is not None:
        layer.set_weights(pending)
        del layer._kc_weights
    return y


def rebuild(model, replace=None, name=None):
    """A new model computing ``model`` with some layers replaced.

    ``replace`` maps a layer name to ``fn(layer, x) -> y``, which builds whatever should stand
    in that layer's place on ``x``, what the layer is called on (a tensor, or a list for a merge
    layer); it is called once per call of the layer. Use :func:`copy_layer` and :func:`apply` to
    keep weights. Every other layer is copied with its weights (once: a shared layer stays shared).
    """
    replace = replace or {}
    graph = Graph(model)
    unknown = set(replace) - set(graph.calls)
    require(not unknown, f"no layer named {', '.join(sorted(unknown))} in model {model.name!r}")
    new = {tensor_key(t): keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=t._keras_history.layer.name)
           for t in model.inputs}
    copies = {}
    for node in graph.nodes:
        layer = node.layer
        args, kwargs = tf.nest.map_structure(lambda v: new[tensor_key(v)] if is_keras_tensor(v) else v,
                                             (node.call_args, node.call_kwargs))
        if layer.name in replace:
            y = replace[layer.name](layer, args[0])
        else:
            if layer.name not in copies:
                copies[layer.name] = copy_layer(layer)
            y = apply(copies[layer.name], *args, **kwargs)
        new.update(zip(map(tensor_key, outputs_of(node)), tf.nest.flatten(y)))

    def mapped(structure):
        return tf.nest.map_structure(lambda t: new[tensor_key(t)], structure)

    return keras.Model(mapped(model._nested_inputs), mapped(model._nested_outputs), name=name or model.name)
