"""Learning curves per optimizer step (``--curve-every N``; note 001's figures: accuracy per SGD step).

Every N optimizer steps of a ``fit``, and at its last step, :class:`StepCurve` records the train loss and
the task metric over the samples since the previous row (with N = 1: each batch's own; ε, a maximum, is
the epoch's so far) and, when there is a validation split, the loss and the metric on the whole split.
Steps and epochs count on across the ``fit`` calls of one run (LC's L-steps, the α values, a method's
stages), as the merged per-epoch history does, until :func:`save` writes the rows as ``steps.csv`` and
``steps.png``.
"""
import csv
import math
from pathlib import Path

import numpy as np

from kcompress.backend import keras
from kcompress.core.objectives import score_name, scores


class _Run:
    """The rows recorded since the last :func:`save`, and the steps and epochs trained meanwhile."""

    def __init__(self):
        self.rows, self.steps, self.epochs = [], 0, 0


_run = _Run()


def discard():
    """Forget the rows of a run that failed, so that they never land in the next run's file."""
    global _run
    _run = _Run()


def save(folder):
    """Write the rows recorded since the last call as ``steps.csv`` in ``folder``; return them (for a plot)."""
    rows = _run.rows
    discard()
    if not rows:
        return rows
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(Path(folder) / "steps.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)
    return rows


class StepCurve(keras.callbacks.Callback):
    """Records a row every ``every`` optimizer steps of ``data``'s training, and one at its end."""

    def __init__(self, every, data, batch_size, initial_epoch=0):
        super().__init__()
        self.every, self.data, self.batch_size = int(every), data, int(batch_size)
        self.initial_epoch, self.metric, self.resumed, self.logs = int(initial_epoch), score_name(data), None, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.resumed is None:  # a resumed fit begins after its restored epochs, which history.csv counts
            self.resumed = epoch - self.initial_epoch
            _run.epochs += self.resumed
            _run.steps += self.resumed * int(self.params["steps"])
        self.epoch, self.start, self.before = _run.epochs, _run.steps, (0, {})

    def on_train_batch_end(self, batch, logs=None):
        _run.steps, self.logs = self.start + batch + 1, logs or {}
        self.seen = min((batch + 1) * self.batch_size, len(self.data.x_train))
        if _run.steps % self.every == 0:
            self.record()

    def on_epoch_end(self, epoch, logs=None):
        _run.epochs += 1

    def on_train_end(self, logs=None):
        if self.logs is not None and (not _run.rows or _run.rows[-1]["step"] != _run.steps):
            self.record()

    def record(self):
        row = {"step": _run.steps, "epoch": self.epoch, "loss": self.window("loss"), self.metric: self.train_metric()}
        if self.data.has_val:
            pred = _outputs(self.model, self.data.x_val)
            row["val_loss"] = float(self.model.loss(self.data.y_val, pred))
            row[f"val_{self.metric}"] = scores(self.data.y_val, pred, self.data, "val_")[f"val_{self.metric}"]
        _run.rows.append(row)
        self.before = (self.seen, self.logs)

    def train_metric(self):
        """The task metric since the previous row (error % from Keras's accuracy, as ErrorFromAccuracy does)."""
        return 100.0 * (1.0 - self.window("accuracy")) if self.metric == "error" else self.window(self.metric)

    def window(self, key):
        """``key``'s mean since the previous row, from Keras's means over the epoch so far (ε: the epoch's max)."""
        value, (seen, logs) = float(self.logs.get(key, math.nan)), self.before
        if key == "max_error" or not seen:
            return value
        return (value * self.seen - float(logs.get(key, math.nan)) * seen) / (self.seen - seen)


def _outputs(model, x, batch_size=1024):
    """``model``'s outputs on ``x`` without ``predict``, whose own History would replace the one ``fit`` returns."""
    return np.concatenate([model.predict_on_batch(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
