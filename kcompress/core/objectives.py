"""Losses and metrics: what a model is trained on and judged by.

Losses: ``xent`` (cross-entropy on logits), ``mse``, and ``lse`` — the log-sum-exp of the
absolute errors, a smooth maximum that trains a learned index for its worst error ε.
Metrics: ``error`` (% misclassified, from Keras' accuracy) for classification; ``max_error`` (ε, in positions)
and ``mae`` (in positions) for regression. :func:`scores` computes the same numbers
exactly with numpy on whole splits; the Keras metrics are for per-epoch history.
"""
import numpy as np

from kcompress.backend import keras, tf
from kcompress.errors import require

LOSSES = ("xent", "mse", "lse")


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


def get_loss(name, task, lse_temperature=1e-3):
    """The Keras loss for ``--loss name``; ``None`` picks xent/mse by task."""
    name = name or default_loss(task)
    require(name in LOSSES, f"unknown --loss {name!r} (one of {', '.join(LOSSES)})")
    require(name != "xent" or task == "classification", "--loss xent needs class labels; use mse or lse for regression")
    if name == "xent":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="xent")
    if name == "mse":
        return keras.losses.MeanSquaredError(name="mse")
    return LogSumExpError(lse_temperature)


def default_loss(task):
    return "xent" if task == "classification" else "mse"


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
    """The per-epoch metrics for ``data``'s task."""
    if data.task == "classification":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]  # error %: ErrorFromAccuracy
    return [MaxAbsError(data.y_scale), ScaledMAE(data.y_scale)]


def primary_metric(task):
    """The headline number: ``test_error`` (%) or ``max_error`` (ε, positions); lower is better."""
    return "test_error" if task == "classification" else "max_error"


def score_name(task):
    """The headline number's key in :func:`scores` (no split prefix): ``error`` or ``max_error``."""
    return "error" if task == "classification" else "max_error"


def scores(y_true, y_pred, data, prefix=""):
    """Exact metrics of predictions ``y_pred`` against ``y_true`` for ``data``'s task."""
    if data.task == "classification":
        acc = float(np.mean(np.argmax(y_pred, axis=-1) == y_true))
        return {f"{prefix}error": 100.0 * (1.0 - acc), f"{prefix}accuracy": acc}
    err = np.abs(y_pred.reshape(y_true.shape).astype(np.float64) - y_true) * data.y_scale
    return {f"{prefix}max_error": float(err.max()), f"{prefix}mae": float(err.mean())}


def evaluate_model(model, data, batch_size=1024, test_pred=None):
    """Test (and train) scores of ``model`` on ``data``, keyed as in ``run.json``'s metrics;
    ``test_pred`` passes test-set outputs already computed, so that they are not computed twice."""
    test_pred = predict(model, data.x_test, batch_size) if test_pred is None else test_pred
    test = scores(data.y_test, test_pred, data, "test_")
    if data.task == "regression":
        test = {"max_error": test["test_max_error"], "mae": test["test_mae"]}
    train = scores(data.y_train, predict(model, data.x_train, batch_size), data, "train_")
    return {**test, **train}


def predict(model, x, batch_size=1024):
    """Model outputs on ``x`` as numpy, without a progress bar."""
    return model.predict(x, batch_size=batch_size, verbose=0)
