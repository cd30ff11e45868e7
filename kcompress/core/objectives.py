"""Losses and metrics: what a model is trained on and judged by.

Losses: ``xent`` (cross-entropy), ``mse``, ``mae``, and ``lse`` — the log-sum-exp of the
absolute errors, a smooth maximum that trains a learned index for its worst error ε. An mse or mae
regression averages its outputs' errors (``--loss-reduction mean``, Keras's) or sums them (``sum``;
``per-output``: the same sum, each output's term also logged as ``loss_out<k>``).
Metrics: ``error`` (% misclassified, from Keras' accuracy) for classification; ``max_error`` (ε, in positions),
``mae`` and ``mse`` for regression. :func:`scores` computes the same numbers exactly with numpy on
whole splits; the Keras metrics are for per-epoch history.

How a model's outputs are read is its *head* (``Dataset.head``): ``logits`` (K raw scores, the zoo's),
``softmax`` (K probabilities), ``sigmoid`` (one probability: binary, threshold ½), ``binary-logit``
(one raw score: binary, threshold 0) or ``linear`` (regression). The cross-entropy follows the head,
so a softmax output is never put through a second softmax (:func:`infer_head` reads it off the graph).
"""
import numpy as np

from kcompress.backend import keras, tf
from kcompress.core.tasks import BINARY, LOSSES
from kcompress.errors import require


@keras.utils.register_keras_serializable("kcompress")
class LogSumExpError(keras.losses.Loss):
    """``t · log(mean(exp(|y − ŷ| / t)))``: tends to max |y − ŷ| as the temperature t → 0."""

    def __init__(self, temperature=1e-3, name="lse", **kwargs):
        super().__init__(name=name, reduction=keras.losses.Reduction.NONE, **kwargs)
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        err = tf.abs(tf.cast(y_true, y_pred.dtype) - y_pred) / self.temperature
        n = tf.cast(tf.size(err), err.dtype)
        return self.temperature * (tf.reduce_logsumexp(err) - tf.math.log(n))

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def output_errors(y_true, y_pred, kind):
    """Squared (mse) or absolute (mae) error per sample and output: what a loss reduction combines."""
    y_pred = tf.convert_to_tensor(y_pred)
    err = tf.reshape(tf.cast(y_true, y_pred.dtype), tf.shape(y_pred)) - y_pred
    return tf.square(err) if kind == "mse" else tf.abs(err)


@keras.utils.register_keras_serializable("kcompress")
class SummedOutputError(keras.losses.Loss):
    """mse or mae summed over the outputs, where Keras's average them (note 002's earlier regression loss)."""

    def __init__(self, kind="mse", name=None, **kwargs):
        super().__init__(name=name or kind, **kwargs)
        self.kind = kind

    def call(self, y_true, y_pred):
        return tf.reduce_sum(output_errors(y_true, y_pred, self.kind), axis=-1)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}


@keras.utils.register_keras_serializable("kcompress")
class OutputLoss(keras.metrics.Mean):
    """One output's term of a per-output loss over the samples seen, so that each is logged on its own."""

    def __init__(self, index=0, kind="mse", name=None, **kwargs):
        super().__init__(name=name or f"loss_out{index}", **kwargs)
        self.index, self.kind = int(index), kind

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(output_errors(y_true, y_pred, self.kind)[..., self.index], sample_weight)

    def get_config(self):
        return {**super().get_config(), "index": self.index, "kind": self.kind}


class BinaryXent(keras.losses.BinaryCrossentropy):
    """Binary cross-entropy of class labels (shape (n,)) against one output unit (shape (n, 1)): the
    labels take the outputs' shape first, where Keras would broadcast them to (n, n) for numpy inputs."""

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        return super().call(tf.reshape(tf.cast(y_true, y_pred.dtype), tf.shape(y_pred)), y_pred)


def head_of(data):
    """``data``'s head (see the module), the task's default when it was not set."""
    return data.head or ("logits" if data.task == "classification" else "linear")


def get_loss(name, data, lse_temperature=1e-3, reduction="mean"):
    """The Keras loss for ``--loss name`` on ``data`` (its task and head); ``None`` picks xent/mse by task;
    ``reduction`` (``--loss-reduction``) ``sum`` or ``per-output`` sums an mse/mae regression over its outputs."""
    name = name or default_loss(data.task)
    require(name in LOSSES, f"unknown --loss {name!r} (one of {', '.join(LOSSES)})")
    require(name != "xent" or data.task == "classification",
            "--loss xent needs class labels; use mse, mae or lse for regression")
    require(reduction == "mean" or name in ("mse", "mae"),
            f"--loss-reduction {reduction} combines the outputs of an mse or mae regression, not of --loss {name}")
    if reduction != "mean":
        return SummedOutputError(name)
    head = head_of(data)
    if name == "xent" and head in BINARY:
        return BinaryXent(from_logits=head == "binary-logit", name="xent")
    if name == "xent":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=head == "logits", name="xent")
    if name == "mse":
        return keras.losses.MeanSquaredError(name="mse")
    if name == "mae":
        return keras.losses.MeanAbsoluteError(name="mae")
    return LogSumExpError(lse_temperature)


def default_loss(task):
    return "xent" if task == "classification" else "mse"


def infer_head(model, data):
    """The head of ``model``'s output for ``data``'s labels: read from the output layer's activation
    (a Dense/Conv activation, an Activation or a Softmax layer) and its width; exit 2 if they cannot fit."""
    require(len(model.outputs) == 1, f"the model has {len(model.outputs)} outputs; kcompress compresses models "
                                     "with one output tensor")
    width = int(model.outputs[0].shape[-1] or 1)
    if data.task != "classification":
        return "linear"
    activation = output_activation(model)
    if width == 1:
        require(data.num_classes == 2, f"--data: {data.num_classes} classes but the model has one output "
                                       "(a binary classifier needs labels 0 and 1)")
        return "sigmoid" if activation == "sigmoid" else "binary-logit"
    require(data.num_classes <= width, f"--data: {data.num_classes} classes but the model has {width} outputs")
    return "softmax" if activation == "softmax" else "logits"


def output_activation(model):
    """The name of the activation that ends ``model`` (``linear`` if none)."""
    layer = model.outputs[0]._keras_history.layer
    kind = type(layer).__name__
    if kind == "Softmax":
        return "softmax"
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", str(activation)) if activation is not None else "linear"


class ErrorFromAccuracy(keras.callbacks.Callback):
    """Adds ``error`` (%) = 100 · (1 − accuracy) to each epoch's logs, train and validation.

    Converting Keras' own accuracy once per epoch is free; a metric subclass converting it
    in every training step measured ~10 % slower on LeNet-300-100. Put it before callbacks
    that monitor ``val_error`` (early stopping, plateau schedules).
    """

    def on_epoch_end(self, epoch, logs=None):
        for prefix in ("", "val_"):
            if logs is not None and f"{prefix}accuracy" in logs:
                logs[f"{prefix}error"] = 100.0 * (1.0 - float(logs[f"{prefix}accuracy"]))


@keras.utils.register_keras_serializable("kcompress")
class MaxAbsError(keras.metrics.Metric):
    """ε: the largest |y − ŷ| seen, in positions (targets are positions / ``scale``)."""

    def __init__(self, scale=1.0, name="max_error", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = float(scale)
        self.worst = self.add_weight("worst", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        err = tf.reduce_max(tf.abs(tf.cast(y_true, y_pred.dtype) - y_pred))
        self.worst.assign(tf.maximum(self.worst, err))

    def result(self):
        return self.worst * self.scale

    def reset_state(self):
        self.worst.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.utils.register_keras_serializable("kcompress")
class ScaledMAE(keras.metrics.MeanAbsoluteError):
    """Mean absolute error in positions."""

    def __init__(self, scale=1.0, name="mae", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = float(scale)

    def result(self):
        return super().result() * self.scale

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def keras_metrics(data):
    """The per-epoch metrics for ``data``'s task and head."""
    if data.task == "classification" and head_of(data) in BINARY:
        return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.5 if head_of(data) == "sigmoid" else 0.0)]
    if data.task == "classification":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]  # error %: ErrorFromAccuracy
    return [MaxAbsError(data.y_scale), ScaledMAE(data.y_scale)]


def output_losses(name, data, reduction):
    """The per-output loss terms logged beside the loss (``loss_out0``, ...) under ``per-output``, else none."""
    if reduction != "per-output":
        return []
    outputs = int(data.y_train.shape[-1]) if data.y_train.ndim > 1 else 1
    return [OutputLoss(k, name or default_loss(data.task)) for k in range(outputs)]


def primary_metric(task):
    """The headline number's key in ``run.json``'s metrics (lower is better): ``test_error`` (%) for
    classes, ``max_error`` (ε, positions) for regression, or the metric a dataset names (``data.metric``)."""
    return {"error": "test_error"}.get(score_name(task), score_name(task))


def score_name(task):
    """The headline number's key in :func:`scores` (no split prefix); ``task`` is a task name or a dataset."""
    metric = getattr(task, "metric", None)
    if metric:
        return metric
    task = getattr(task, "task", task)
    return "error" if task == "classification" else "max_error"


def predicted_classes(y_pred, data):
    """Class indices from outputs ``y_pred`` under ``data``'s head (a binary head: one thresholded unit)."""
    head = head_of(data)
    if head in BINARY:
        return (y_pred.reshape(len(y_pred), -1)[:, 0] > (0.5 if head == "sigmoid" else 0.0)).astype(np.int64)
    return np.argmax(y_pred, axis=-1)


def scores(y_true, y_pred, data, prefix=""):
    """Exact metrics of predictions ``y_pred`` against ``y_true`` for ``data``'s task."""
    if data.task == "classification":
        acc = float(np.mean(predicted_classes(y_pred, data) == y_true))
        return {f"{prefix}error": 100.0 * (1.0 - acc), f"{prefix}accuracy": acc}
    diff = (y_pred.reshape(y_true.shape).astype(np.float64) - y_true) * data.y_scale
    err = np.abs(diff)
    return {f"{prefix}max_error": float(err.max()), f"{prefix}mae": float(err.mean()),
            f"{prefix}mse": float(np.mean(diff ** 2))}


def evaluate_model(model, data, batch_size=1024, test_pred=None):
    """Test (and train) scores of ``model`` on ``data``, keyed as in ``run.json``'s metrics;
    ``test_pred`` passes test-set outputs already computed, so that they are not computed twice."""
    test_pred = predict(model, data.x_test, batch_size) if test_pred is None else test_pred
    test = scores(data.y_test, test_pred, data, "test_")
    if data.task == "regression":
        test = {k[len("test_"):]: v for k, v in test.items()}
    train = scores(data.y_train, predict(model, data.x_train, batch_size), data, "train_")
    return {**test, **train}


def predict(model, x, batch_size=1024):
    """Model outputs on ``x`` as numpy, without a progress bar."""
    return model.predict(x, batch_size=batch_size, verbose=0)
