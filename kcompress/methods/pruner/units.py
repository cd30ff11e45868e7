"""Remove units (Dense) or channels (Conv2D) from a model for real: a smaller plain model.

``remove_units(model, {layer: kept indices})`` keeps only the given output units of each
named layer and follows the removal downstream: per-channel layers in between (batch-norm
entries, gates) lose the same entries, shape-only layers (activations, pooling, flatten)
pass the index map on (flatten turns kept channels into kept flat positions), and the next
layer with a kernel loses the matching *input* weights. The result computes exactly what
the original computes with the removed units forced to zero (up to float round-off):
removing a unit is the same as multiplying it by 0. Used by the pruner masks; any method
that decides which units to drop can call it.
"""
import numpy as np

from kcompress.core.surgery import apply, chain_layers, copy_layer, rebuild
from kcompress.errors import require

KERNEL_LAYERS = ("Dense", "Conv2D")
# Layers whose weights are one vector per channel (all sliced alike).
PER_CHANNEL_WEIGHTS = ("BatchNormalization", "Gate")
# Layers without weights that keep the channel axis as it is.
PASS_THROUGH = ("Activation", "ReLU", "LeakyReLU", "ELU", "Dropout", "MaxPooling2D", "AveragePooling2D",
                "GlobalAveragePooling2D", "GlobalMaxPooling2D")


def _kind(layer):
    return type(layer).__name__


def _slice_output(layer, weights, idx):
    """Kernel/bias of a Dense/Conv2D layer keeping output units ``idx`` (+ config change)."""
    kernel, *bias = weights
    weights = [kernel[..., idx]] + [b[idx] for b in bias]
    size = {"units": len(idx)} if _kind(layer) == "Dense" else {"filters": len(idx)}
    return weights, size


def _slice_input(weights, idx):
    """Kernel/bias of a Dense/Conv2D layer keeping input features ``idx`` (axis −2 of the kernel)."""
    kernel, *bias = weights
    return [np.take(kernel, idx, axis=-2)] + bias


def _flat_positions(layer, idx):
    """Kept flat positions after Flatten for kept channels ``idx`` (channels-last, C fastest)."""
    shape = layer.input_shape[1:]
    channels, spatial = int(shape[-1]), int(np.prod(shape[:-1]))
    return np.asarray([s * channels + c for s in range(spatial) for c in idx], dtype=np.int64)


def removal_plan(model, keep):
    """``{layer name: (weights, config changes)}`` for every layer that changes, plus checks."""
    layers = chain_layers(model)
    names = {l.name for l in layers}
    unknown = sorted(set(keep) - names)
    require(not unknown, f"no layer named {', '.join(unknown)} in model {model.name!r}")
    plan, current, source = {}, None, None  # current: kept indices of the last axis flowing on
    for layer in layers:
        kind, weights, config = _kind(layer), layer.get_weights(), {}
        changed = current is not None and kind in KERNEL_LAYERS + PER_CHANNEL_WEIGHTS
        if current is not None:
            if kind in KERNEL_LAYERS:
                weights, current = _slice_input(weights, current), None
            elif kind in PER_CHANNEL_WEIGHTS:
                weights = [w[current] for w in weights]
            elif kind == "Flatten":
                current = _flat_positions(layer, current)
            else:
                require(kind in PASS_THROUGH,
                        f"cannot remove units of {source!r}: layer {layer.name!r} ({kind}) after it is not supported")
        if layer.name in keep:
            require(kind in KERNEL_LAYERS, f"cannot remove units of {layer.name!r}: only Dense and Conv2D layers")
            idx = np.asarray(sorted(set(int(i) for i in keep[layer.name])), dtype=np.int64)
            width = int(layer.get_weights()[0].shape[-1])
            require(len(idx) >= 1 and idx[0] >= 0 and idx[-1] < width,
                    f"{layer.name}: kept units must be 1..{width} indices in [0, {width})")
            weights, config = _slice_output(layer, weights, idx)
            current, source = idx, layer.name
            changed = True
        if changed:
            plan[layer.name] = (weights, config)
    require(current is None, f"cannot remove units of {source!r}: no later layer with a kernel consumes them "
                             "(the output layer's units cannot be removed)")
    return plan


def remove_units(model, keep, name=None):
    """A new plain model: ``model`` keeping only units ``keep[layer]`` of each named layer."""
    plan = removal_plan(model, keep)

    def replaced(weights, config):
        return lambda layer, x: apply(copy_layer(layer, weights=weights, **config), x)

    return rebuild(model, replace={n: replaced(w, c) for n, (w, c) in plan.items()}, name=name)
