"""The names of losses, metrics and output heads, without TensorFlow: the flags and settings
classes list them as choices, :mod:`kcompress.core.objectives` implements them."""

LOSSES = ("xent", "mse", "mae", "lse")
LOSS_REDUCTIONS = ("mean", "sum", "per-output")  # how a regression loss combines its outputs
METRICS = ("error", "max_error", "mae", "mse")
HEADS = ("logits", "softmax", "sigmoid", "binary-logit", "linear")
BINARY = ("sigmoid", "binary-logit")
