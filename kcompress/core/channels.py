"""Channel dependency groups: which layers' output channels must be pruned together.

A *producer* owns its output channels (Dense, Conv1D/2D/3D, SeparableConv2D's pointwise filters,
Conv2DTranspose). Walking the graph (:class:`kcompress.core.surgery.Graph`), every tensor gets a
*channel map*: for each position of its last axis, the producer channel it carries (an id), or −1
(an input's or an unknown layer's: never removable). Per-channel layers (batch-norm, activations,
pooling, depthwise conv with depth multiplier 1, gates, ...) pass the map on; element-wise merges
(Add, Multiply, ...) unify the channels they meet position by position (union-find); Concatenate
on the last axis joins maps; Flatten repeats the map over the flattened positions (channels-last,
channel fastest), and so does a Reshape whose last axis is a multiple of the channels (one that
only adds unit axes keeps the map). Any other layer (another Reshape, Permute, Lambda, a softmax, a
shared layer, ...) and the model outputs *freeze* every channel reaching them. This is the dependency-graph idea of
torch-pruning and NNI's speed-up.

A *group* is the set of producers whose channels got unified; it is prunable when none of its
channels is frozen and channel i of every member is one class (as an Add makes it). Removing the
same channels from every member, :meth:`Channels.plan` slices each producer's output axis, every
per-channel weight on the way and every consumer's input axis (the right positions after a
Flatten or Concatenate), so the smaller model computes the original with those channels at zero.
"""
from dataclasses import dataclass, field

import numpy as np

from kcompress.core.surgery import Graph, outputs_of, tensor_key
from kcompress.errors import require

PRODUCERS = ("Dense", "Conv1D", "Conv2D", "Conv3D", "SeparableConv2D", "Conv2DTranspose")
# Layers acting on each channel alone, that keep the last axis as it is; those with weights hold
# one entry per channel (depthwise: its kernel's axis −2).
PER_CHANNEL = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "ThresholdedReLU",
               "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
               "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D",
               "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "DepthwiseConv2D", "Gate",
               "UpSampling1D", "UpSampling2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D")
MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
MIXING_ACTIVATIONS = ("softmax", "log_softmax")  # these mix a unit with the others of its row


def _kind(layer):
    return type(layer).__name__


def _width(t):
    return int(t.shape[-1]) if t.shape.rank and t.shape[-1] is not None else 0


def _channels_last(layer, rank):
    """Whether ``layer`` (called on a tensor of ``rank``) keeps its channels on the last axis and
    treats each alone (an Activation layer: unless it is a softmax)."""
    cfg = layer.get_config()
    if cfg.get("data_format", "channels_last") != "channels_last" or cfg.get("groups", 1) != 1:
        return False
    if _kind(layer) == "Activation":
        return cfg["activation"] not in MIXING_ACTIVATIONS
    if _kind(layer) == "BatchNormalization":
        axes = np.atleast_1d(cfg["axis"])
        return len(axes) == 1 and int(axes[0]) in (-1, rank - 1)
    return _kind(layer) != "DepthwiseConv2D" or cfg["depth_multiplier"] == 1


@dataclass
class Group:
    """Producers whose output channels are pruned together; named after the first of them."""

    members: list
    width: int
    reason: str = ""  # why it is not prunable ("" = prunable)
    roots: list = field(default_factory=list, repr=False)  # class of each channel index

    @property
    def name(self):
        return self.members[0]

    @property
    def prunable(self):
        return not self.reason


class Channels:
    """The channel maps and groups of ``model`` (see the module docstring)."""

    def __init__(self, model):
        self.model, self.graph = model, Graph(model)
        self.parent, self.frozen, self.base, self.size, self.maps = [], {}, {}, {}, {}
        for t in model.inputs:
            self.maps[tensor_key(t)] = np.full(_width(t), -1)
        for node in self.graph.nodes:
            self._step(node)
        for t in model.outputs:
            self._freeze(self.maps[tensor_key(t)], f"it reaches the model output {t._keras_history.layer.name!r} "
                                                   "(the output layer's units cannot be removed)", first=False)
        self.groups = self._groups()

    # union-find over channel ids
    def _find(self, i):
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def _union(self, a, b):
        a, b = self._find(a), self._find(b)
        if a != b:
            self.parent[b] = a
            if b in self.frozen:
                self.frozen.setdefault(a, self.frozen.pop(b))

    def _freeze(self, ids, reason, first=True):
        """Mark the classes of channel ids ``ids`` unprunable, keeping the first reason (or this one)."""
        for i in ids[ids >= 0]:
            root = self._find(int(i))
            self.frozen[root] = self.frozen.get(root, reason) if first else reason

    def _new(self, layer, width):
        """Fresh channel ids for a producer's ``width`` output channels."""
        self.base[layer.name], self.size[layer.name] = len(self.parent), width
        self.parent.extend(range(len(self.parent), len(self.parent) + width))
        return np.arange(self.base[layer.name], len(self.parent))

    def inputs(self, node):
        """The channel maps of a call's input tensors."""
        return [self.maps[tensor_key(t)] for t in node.keras_inputs]

    def _step(self, node):
        """Channel maps of one call's outputs, unifying or freezing what its inputs carry."""
        layer, ins, outs = node.layer, self.inputs(node), outputs_of(node)
        kind, single = _kind(layer), len(ins) == 1 and len(outs) == 1
        rank = len(node.keras_inputs[0].shape) if node.keras_inputs else 0
        plain = single and (self.graph.calls[layer.name] == 1 or kind == "Gate") and _channels_last(layer, rank)
        if plain and kind in PRODUCERS:
            out = self._new(layer, _width(outs[0]))
            if layer.get_config().get("activation") in MIXING_ACTIVATIONS:
                self._freeze(out, f"layer {layer.name!r} has a {layer.get_config()['activation']} activation")
        elif plain and kind in PER_CHANNEL:
            out = ins[0]
        elif kind in MERGES and len(outs) == 1 and len({len(m) for m in ins}) == 1:
            out = self._merge(layer, ins)
        elif kind == "Concatenate" and layer.axis in (-1, len(outs[0].shape) - 1):
            out = np.concatenate(ins)
        elif plain and kind in ("Flatten", "Reshape") and len(ins[0]) and _width(outs[0]) % len(ins[0]) == 0 \
                and _width(outs[0]):
            out = np.tile(ins[0], _width(outs[0]) // len(ins[0]))  # row-major: position p holds channel p mod C
        else:
            for m in ins:
                self._freeze(m, f"its channels reach layer {layer.name!r} ({kind}), which kcompress cannot prune "
                                "through")
            out = None
        for i, t in enumerate(outs):
            self.maps[tensor_key(t)] = out if out is not None and i == 0 else np.full(_width(t), -1)

    def _merge(self, layer, ins):
        """Unify the channels an element-wise merge meets; a non-producer channel freezes its partners."""
        for m in ins[1:]:
            for a, b in zip(ins[0], m):
                if a >= 0 and b >= 0:
                    self._union(int(a), int(b))
                elif a >= 0 or b >= 0:
                    self._freeze(np.asarray([max(a, b)]), f"its channels meet channels of no prunable layer (an "
                                                          f"input's) at {layer.name!r} ({_kind(layer)})")
        out = ins[0].copy()
        for m in ins[1:]:
            out = np.where(out >= 0, out, m)
        return out

    def _groups(self):
        """The groups of producers, in the model's layer order."""
        order = [l.name for l in self.model.layers if l.name in self.base]
        owner = {}  # class -> first producer seen with a channel in it
        link = {name: name for name in order}

        def top(n):
            while link[n] != n:
                n = link[n]
            return n

        for name in order:
            for r in self._roots(name):
                other = owner.setdefault(r, name)
                if top(other) != top(name):
                    link[top(name)] = top(other)
        groups = {}
        for name in order:
            groups.setdefault(top(name), []).append(name)
        return [self._group(members) for members in groups.values()]

    def _roots(self, name):
        return [self._find(self.base[name] + i) for i in range(self.size[name])]

    def _group(self, members):
        roots = self._roots(members[0])
        reason = next((self.frozen[r] for m in members for r in self._roots(m) if r in self.frozen), "")
        aligned = len(set(roots)) == len(roots) and all(self._roots(m) == roots for m in members)
        if not reason and not aligned:
            reason = "its channels meet other layers' channels in a different order"
        return Group(members=members, width=len(roots), reason=reason, roots=roots)

    def group_of(self, name):
        """The group of the producer named ``name`` (a usage error if it is none)."""
        layer = next((l for l in self.model.layers if l.name == name), None)
        require(layer is not None, f"no layer named {name} in model {self.model.name!r}")
        require(_kind(layer) in PRODUCERS, f"cannot remove units of {name!r}: it is a {_kind(layer)}, not a layer "
                                           f"with output channels ({', '.join(PRODUCERS)})")
        require(name in self.base, f"cannot remove units of {name!r}: it is called more than once, or its "
                                   "channels are not on the last axis")
        return next(g for g in self.groups if name in g.members)

    def plan(self, keep):
        """``{layer: (weights, config changes)}`` removing all but channels ``keep[group name]``
        (sorted indices) from each named group, for every layer that changes."""
        removed = set()
        for name, idx in keep.items():
            group, kept = self.group_of(name), set(idx)
            require(group.prunable, f"cannot remove units of {name!r}: {group.reason}")
            removed.update(r for i, r in enumerate(group.roots) if i not in kept)
        roots = np.asarray([self._find(i) for i in range(len(self.parent))] + [-1])  # id −1: the last entry
        gone = np.isin(roots, sorted(removed))
        plan = {}
        for node in self.graph.nodes:
            layer = node.layer
            if layer.name in plan:
                continue
            mask = [~gone[m] for m in self.inputs(node)]
            out = None
            if layer.name in self.base:
                start = self.base[layer.name]
                out = ~gone[start:start + self.size[layer.name]]
            if _kind(layer) == "Reshape":
                change = _reshaped(layer, ~gone[self.maps[tensor_key(outputs_of(node)[0])]])
            else:
                change = _sliced(layer, mask[0] if len(mask) == 1 else None, out)
            if change:
                plan[layer.name] = change
        return plan


def _reshaped(layer, kept):
    """``([], config)`` of a Reshape whose output keeps last-axis positions ``kept``, or None."""
    target = tuple(layer.target_shape)
    if kept.all() or target[-1] == -1:
        return None
    return [], {"target_shape": target[:-1] + (int(kept.sum()),)}


def _sliced(layer, inputs, outputs):
    """``(weights, config)`` of ``layer`` keeping input positions ``inputs`` and output channels
    ``outputs`` (boolean masks; None or all-true: unchanged), or None when nothing changes."""
    cut_in = inputs is not None and not inputs.all() and bool(layer.weights)
    cut_out = outputs is not None and not outputs.all()
    if not (cut_in or cut_out):
        return None
    kind, weights = _kind(layer), layer.get_weights()
    if kind not in PRODUCERS:  # per-channel weights: last axis, or the depthwise kernel's axis −2
        if kind == "DepthwiseConv2D":
            return [np.compress(inputs, weights[0], axis=-2)] + [b[inputs] for b in weights[1:]], {}
        return [np.compress(inputs, w, axis=-1) if w.shape[-1] == len(inputs) else w for w in weights], {}
    if kind == "SeparableConv2D":
        depthwise, pointwise, *bias = weights
        if cut_in:
            depthwise = np.compress(inputs, depthwise, axis=-2)
            pointwise = np.compress(np.repeat(inputs, depthwise.shape[-1]), pointwise, axis=-2)
        kernels, out_axis = [depthwise, pointwise], -1
    else:
        kernels, bias = weights[:1], weights[1:]
        in_axis, out_axis = (-1, -2) if kind == "Conv2DTranspose" else (-2, -1)
        if cut_in:
            kernels = [np.compress(inputs, kernels[0], axis=in_axis)]
    config = {}
    if cut_out:
        kernels[-1] = np.compress(outputs, kernels[-1], axis=out_axis)
        bias = [b[outputs] for b in bias]
        config = {"units" if kind == "Dense" else "filters": int(outputs.sum())}
    return kernels + bias, config
