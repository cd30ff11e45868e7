"""Remove units (Dense) or channels (convolutions) from a model for real: a smaller plain model.

``remove_units(model, {layer: kept indices})`` keeps only the given output channels of each
named layer — and of every layer in its channel group (:mod:`kcompress.core.channels`: layers
whose channels meet at an Add, say, lose the same ones) — and follows the removal downstream:
per-channel layers in between (batch-norm entries, depthwise kernels, gates) lose the same
entries, and every layer reading them loses the matching *input* weights, at the right positions
after a Flatten or Concatenate. The result computes exactly what the original computes with the
removed channels forced to zero wherever they are read (up to float round-off): removing a unit
is the same as multiplying it by 0. Used by the pruner masks; any method that decides which units
to drop can call it.
"""
from kcompress.core.channels import Channels
from kcompress.core.surgery import apply, copy_layer, rebuild
from kcompress.errors import require


def group_keep(channels, keep):
    """``{group name: sorted indices}`` from ``{layer: indices}``: a layer stands for its group,
    whose members must not be given different indices."""
    out, named = {}, {}
    for name, indices in keep.items():
        group = channels.group_of(name)
        require(group.prunable, f"cannot remove units of {name!r}: {group.reason}")
        idx = sorted(set(int(i) for i in indices))
        width = group.width
        require(idx and idx[0] >= 0 and idx[-1] < width,
                f"{name}: kept units must be 1..{width} indices in [0, {width})")
        require(out.get(group.name, idx) == idx,
                f"{name} and {named.get(group.name)} share their channels (one group) but were given different units")
        out[group.name], named[group.name] = idx, name
    return out


def removal_plan(model, keep):
    """``{layer name: (weights, config changes)}`` for every layer that changes, plus checks."""
    channels = Channels(model)
    return channels.plan(group_keep(channels, keep))


def remove_units(model, keep, name=None):
    """A new plain model: ``model`` keeping only units ``keep[layer]`` of each named layer's group."""
    plan = removal_plan(model, keep)

    def replaced(weights, config):
        copies = []  # one copy per layer, however often it is called (a shared gate)

        def fn(layer, x):
            if not copies:
                copies.append(copy_layer(layer, weights=weights, **config))
            return apply(copies[0], x)

        return fn

    return rebuild(model, replace={n: replaced(w, c) for n, (w, c) in plan.items()}, name=name)
