"""The one training loop every command shares: compile, fit with callbacks, record.

:func:`fit` trains a model on a :class:`~kcompress.data.Dataset` with the settings of a
:class:`TrainConfig` (optimizer, learning-rate schedule, batch size, early stopping,
resumption, NaN guard), optionally adding penalty terms (see :mod:`kcompress.penalty`),
and returns the per-epoch history. Reference training, fine-tuning after compression,
LC L-steps and tuner trials all go through it.
"""
import math
import sys
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from kcompress.backend import keras, tf
from kcompress.errors import TrainingDiverged, require
from kcompress.objectives import ErrorFromAccuracy, get_loss, keras_metrics
from kcompress.penalty import PenalizedModel

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("fixed", "step", "plateau")


@dataclass
class TrainConfig:
    """Everything that decides how a model is trained (all of it lands in run.json)."""

    epochs: int = 30
    batch_size: object = 64  # an int, or "full" for full-batch training
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    lr_schedule: str = "fixed"
    gamma: float = 0.1
    step_size: int = 10
    plateau_patience: int = 5
    patience: int = 0  # early stopping patience in epochs; 0 = off
    monitor: str = "val_loss"
    loss: str = None  # None: xent for classification, mse for regression
    lse_temperature: float = 1e-3
    verbose: int = None  # Keras verbosity; None: a progress bar on a terminal, a line per epoch otherwise

    @classmethod
    def from_dict(cls, d):
        """A config from a dict, ignoring keys that are not config fields."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names and v is not None})

    def to_dict(self):
        return asdict(self)

    def validate(self):
        require(int(self.epochs) > 0, f"--epochs must be positive, got {self.epochs}")
        require(float(self.lr) > 0 and math.isfinite(float(self.lr)), f"--lr must be positive, got {self.lr}")
        require(
            self.batch_size == "full" or (str(self.batch_size).isdigit() and int(self.batch_size) > 0),
            f"--batch-size must be a positive integer or 'full', got {self.batch_size}",
        )
        require(self.optimizer in OPTIMIZERS, f"unknown --optimizer {self.optimizer!r} (one of {', '.join(OPTIMIZERS)})")
        require(self.lr_schedule in LR_SCHEDULES, f"unknown --lr-schedule {self.lr_schedule!r} (one of {', '.join(LR_SCHEDULES)})")
        require(0 <= float(self.momentum) < 1, f"--momentum must be in [0, 1), got {self.momentum}")
        require(0 < float(self.gamma) <= 1, f"--gamma must be in (0, 1], got {self.gamma}")
        require(int(self.step_size) > 0, f"--step-size must be positive, got {self.step_size}")
        require(int(self.patience) >= 0, f"--patience must be >= 0, got {self.patience}")
        return self

    def batch_for(self, n):
        return n if self.batch_size == "full" else int(self.batch_size)


def make_optimizer(cfg, lr=None):
    """The optimizer of ``cfg`` at learning rate ``lr`` (default ``cfg.lr``)."""
    lr = float(cfg.lr if lr is None else lr)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    return keras.optimizers.SGD(lr, momentum=float(cfg.momentum), nesterov=bool(cfg.nesterov))


def compile_model(model, data, cfg, optimizer=None):
    """Compile ``model`` with ``cfg``'s optimizer, the task's loss and its metrics, in the
    model's tf.distribute scope (a no-op for models built outside any strategy)."""
    with model.distribute_strategy.scope():
        model.compile(
            optimizer=optimizer or make_optimizer(cfg),
            loss=get_loss(cfg.loss, data.task, cfg.lse_temperature),
            metrics=keras_metrics(data),
        )
    return model


def schedule_callbacks(cfg, has_val):
    """Learning-rate schedule and early stopping callbacks for ``cfg``."""
    monitor = cfg.monitor if has_val or not cfg.monitor.startswith("val_") else cfg.monitor[4:]
    callbacks = []
    if cfg.lr_schedule == "step":
        base, gamma, step = float(cfg.lr), float(cfg.gamma), int(cfg.step_size)
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch: base * gamma ** (epoch // step)))
    elif cfg.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=float(cfg.gamma), patience=int(cfg.plateau_patience))
        )
    if int(cfg.patience) > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=int(cfg.patience), restore_best_weights=True))
    return callbacks


class _NaNGuard(keras.callbacks.Callback):
    """Stops training when an epoch's loss is NaN/inf and remembers that it fired.

    Keras' TerminateOnNaN checks after every batch, which forces a device sync per batch;
    checking the epoch's mean loss (NaN if any batch was) costs nothing and still stops
    a diverged run within the epoch it diverged in.
    """

    fired = False

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.fired = True
            self.model.stop_training = True


class IntervalBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, writing its checkpoint at an epoch's end only when at least
    ``interval`` seconds have passed since the last one.

    A checkpoint per epoch costs ~25 ms for LeNet-300-100, about 5 % of a half-second epoch;
    with the interval a kill loses at most ``interval`` seconds of training, and the
    overhead stays negligible whatever the epoch length (``interval=0``: every epoch).
    """

    def __init__(self, backup_dir, interval=10.0):
        super().__init__(str(backup_dir), delete_checkpoint=True)
        self.interval = float(interval)
        self._last = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() - self._last >= self.interval:
            self._backup(epoch=epoch)
            self._last = time.monotonic()


def fit(model, data, cfg, penalties=(), callbacks=(), backup_dir=None, compile=True, initial_epoch=0,
        backup_interval=10.0, steps_per_execution=None, jit_compile=None):
    """Train ``model`` on ``data`` with ``cfg``; return the per-epoch history as a dict of lists.

    ``penalties`` are :class:`~kcompress.penalty.PenaltyTerm` objects added to the loss;
    ``backup_dir`` makes the run resumable after a kill (Keras BackupAndRestore, a checkpoint
    at most every ``backup_interval`` seconds);
    ``compile=False`` keeps an optimizer that the caller compiled (e.g. to carry momentum
    across LC steps). Raises :class:`TrainingDiverged` if the loss becomes NaN/inf.
    ``steps_per_execution``/``jit_compile`` (None: automatic, see :func:`choose_execution`)
    pick the execution path; the returned :class:`History` says which one ran.
    """
    cfg.validate()
    trainee = PenalizedModel(model, penalties) if penalties else model
    if compile or penalties:
        compile_model(trainee, data, cfg, optimizer=None if compile else model.optimizer)
    guard = _NaNGuard()
    all_callbacks = [ErrorFromAccuracy(), guard, *schedule_callbacks(cfg, data.has_val), *callbacks]
    if backup_dir:
        all_callbacks.append(IntervalBackupAndRestore(backup_dir, backup_interval))
    execution = choose_execution(trainee, all_callbacks, steps_per_execution, jit_compile)
    fit_args = dict(
        x=data.x_train,
        y=data.y_train,
        batch_size=cfg.batch_for(len(data.x_train)),
        epochs=int(cfg.epochs) + int(initial_epoch),
        initial_epoch=int(initial_epoch),
        validation_data=(data.x_val, data.y_val) if data.has_val else None,
        callbacks=all_callbacks,
        verbose=(1 if sys.stdout.isatty() else 2) if cfg.verbose is None else cfg.verbose,
    )
    history = fit_with_fallback(trainee, fit_args, execution)
    if guard.fired:
        raise TrainingDiverged(
            f"the loss became NaN/inf at epoch {len(history.epoch) + int(initial_epoch)}: lower --lr "
            f"(now {cfg.lr}) or change --optimizer/--loss; nothing was saved"
        )
    return History({k: [float(v) for v in vals] for k, vals in history.history.items()}, execution)


# -- execution path: steps per call and XLA -------------------------------------------------
STEPS_PER_EXECUTION = 20
XLA_FAILURES = (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError,
                tf.errors.NotFoundError)


class History(dict):
    """:func:`fit`'s per-epoch history (a dict of lists, as before) with the execution path
    that ran in ``execution`` (``steps_per_execution``, ``jit_compile``, ``reason``), for run.json."""

    def __init__(self, values, execution):
        super().__init__(values)
        self.execution = dict(execution)


def choose_execution(model, callbacks, steps_per_execution=None, jit_compile=None):
    """The execution path for training ``model`` with ``callbacks``: several steps per call
    and XLA unless told otherwise or impossible.

    Per-epoch cost of LeNet-300-100 on the 5k MNIST sample, batch 256 (issue 13): plain fit
    134 ms, 20 steps per call 124 ms, + XLA 85 ms; batch 64: 439, 252, 185 ms. A callback
    with per-batch hooks (tfmot's UpdatePruningStep, a batch-wise schedule) would see the
    batches only in groups, so it keeps one step per call; a model with more than one
    replica keeps the plain graph (XLA across replicas is untested here).
    """
    hooks = sorted({type(cb).__name__ for cb in callbacks if cb._implements_train_batch_hooks()})
    reasons = []
    if steps_per_execution is None:
        steps_per_execution = 1 if hooks else STEPS_PER_EXECUTION
        if hooks:
            reasons.append(f"one step per call: per-batch callbacks {', '.join(hooks)}")
    if jit_compile is None:
        jit_compile = model.distribute_strategy.num_replicas_in_sync == 1
        if not jit_compile:
            reasons.append("no XLA: several replicas")
    return {"steps_per_execution": int(steps_per_execution), "jit_compile": bool(jit_compile),
            "reason": "; ".join(reasons)}


def apply_execution(model, execution):
    """Set ``model``'s steps per call and XLA flag; its train function is rebuilt only when
    they change (a rebuild retraces and, under XLA, recompiles: ~0.5 s for LeNet-300-100)."""
    steps, jit = execution["steps_per_execution"], execution["jit_compile"]
    current = model._steps_per_execution
    if bool(model.jit_compile) == jit and current is not None and int(current.numpy()) == steps:
        return
    model.jit_compile = jit
    if current is None:
        model._configure_steps_per_execution(steps)
    else:
        current.assign(steps)
    model.train_function = model.test_function = model.predict_function = None


def fit_with_fallback(model, fit_args, execution):
    """``model.fit(**fit_args)`` on ``execution``'s path; if XLA cannot compile the step
    (an op without an XLA kernel, e.g. in a wrapper layer) before any step ran, run again
    without XLA and note why in ``execution``."""
    apply_execution(model, execution)
    if not execution["jit_compile"]:
        return model.fit(**fit_args)
    start = int(model.optimizer.iterations.numpy())
    try:
        return model.fit(**fit_args)
    except XLA_FAILURES as error:
        if int(model.optimizer.iterations.numpy()) != start:
            raise
        message = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        reason = "; ".join(filter(None, [execution["reason"], f"no XLA: {message}"]))
        execution.update(jit_compile=False, reason=reason)
        apply_execution(model, execution)
        return model.fit(**fit_args)
