"""The final LC model with low-rank layers physically factorised.

A low-rank task's layer with kernel W = U·V (U: m × r, V: r × n) becomes two layers: a linear
layer without bias holding U (Dense with r units, or a Conv2D with r filters and the original
kernel size, strides and padding), then the original layer's activation and bias on V (Dense
with n units, or a 1×1 Conv2D). Done only where r·(m + n) < m·n, so the file and the latency
really shrink; elsewhere the layer keeps its (low-rank) kernel as one matrix.
"""
import numpy as np

from kcompress.core.surgery import apply, copy_layer, rebuild
from kcompress.errors import require

FACTORISABLE = ("Dense", "Conv2D")


def worth_factorising(theta):
    """True when storing U and V is cheaper than storing W."""
    (m, n), r = theta["shape"], theta["rank"]
    return r >= 1 and r * (m + n) < m * n


def _factor_layers(layer, u, v):
    """The two layers replacing ``layer`` (whose kernel as a matrix is u·v)."""
    kind = type(layer).__name__
    require(kind in FACTORISABLE, f"low-rank layer {layer.name!r} is a {kind}; only {', '.join(FACTORISABLE)} can be factorised")
    r = u.shape[1]
    bias = [layer.bias.numpy()] if layer.use_bias else []
    first = {"name": f"{layer.name}_u", "use_bias": False, "activation": "linear"}
    if kind == "Dense":
        return (copy_layer(layer, weights=[u], units=r, **first), copy_layer(layer, weights=[v, *bias]))
    kh, kw, cin, cout = layer.kernel.shape
    return (copy_layer(layer, weights=[u.reshape(kh, kw, cin, r)], filters=r, **first),
            copy_layer(layer, weights=[v.reshape(1, 1, r, cout), *bias], kernel_size=(1, 1), strides=(1, 1),
                       padding="valid", dilation_rate=(1, 1)))


def factorised_model(model, tasks):
    """``model`` (already holding w = Δ(Θ)) with its worthwhile low-rank layers split in two.
    Returns ``(model, names of the factorised layers)``."""
    replace = {}
    for task in tasks:
        theta = task.compression.theta
        if task.matrix and worth_factorising(theta):
            layer = model.get_layer(task.layers[0])
            u, v = theta["u"].astype(np.float32), theta["v"].astype(np.float32)

            def fn(layer, x, u=u, v=v):
                first, second = _factor_layers(layer, u, v)
                return apply(second, apply(first, x))

            replace[layer.name] = fn
    if not replace:
        return model, []
    return rebuild(model, replace), sorted(replace)
