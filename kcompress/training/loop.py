"""The one training loop every command shares: compile, fit with callbacks, record.

:func:`fit` trains a model on a :class:`~kcompress.core.data.Dataset` with the settings of a
:class:`~kcompress.training.config.TrainConfig` (optimizer, learning-rate schedule, batch size, early stopping,
resumption, NaN guard), optionally adding penalty terms (see :mod:`kcompress.training.penalty`),
and returns the per-epoch history. Reference training, fine-tuning after compression,
LC L-steps and tuner trials all go through it.
"""
import sys
import time

import numpy as np

from kcompress.backend import keras
from kcompress.core.objectives import ErrorFromAccuracy, get_loss, keras_metrics, output_losses
from kcompress.errors import Terminated, TrainingDiverged
from kcompress.training import curves, tensorboard
from kcompress.training.batches import training_input
from kcompress.training.checkpoint import FitHistory, IntervalBackupAndRestore, fingerprint
from kcompress.training.execution import choose_execution, fit_with_fallback
from kcompress.training.penalty import PenalizedModel


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
            loss=get_loss(cfg.loss, data, cfg.lse_temperature, cfg.loss_reduction),
            metrics=keras_metrics(data) + output_losses(cfg.loss, data, cfg.loss_reduction),
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


def fit(model, data, cfg, penalties=(), callbacks=(), backup_dir=None, compile=True, initial_epoch=0,
        backup_interval=10.0, run_key=None, steps_per_execution=None, jit_compile=None, planned_epochs=None):
    """Train ``model`` on ``data`` with ``cfg``; return the per-epoch history as a
    :class:`~kcompress.training.checkpoint.FitHistory` (a dict of lists, plus training ``seconds``
    and the ``execution`` path that ran).

    ``penalties`` are :class:`~kcompress.training.penalty.PenaltyTerm` objects added to the loss;
    ``backup_dir`` makes the run resumable after a kill or an interrupt (see
    :mod:`kcompress.training.checkpoint`: a checkpoint after the first epoch, then at most every
    ``backup_interval`` seconds; the history and seconds returned cover the whole run; an exception
    other than ``KeyboardInterrupt`` removes the folder, unless a SIGTERM is stopping the command, see
    :class:`~kcompress.errors.Terminated`); a checkpoint whose fingerprint (weight
    shapes, ``cfg``, data, ``run_key``: the caller's other settings, e.g. the seed) differs is
    discarded with a notice and training starts afresh;
    ``compile=False`` keeps an optimizer that the caller compiled (e.g. to carry momentum
    across LC steps); ``cfg.curve_every`` records learning curves per step (:mod:`kcompress.training.curves`).
    Raises :class:`TrainingDiverged` if the loss becomes NaN/inf.
    ``steps_per_execution``/``jit_compile`` (None: automatic, see
    :func:`~kcompress.training.execution.choose_execution`) pick the execution path; ``planned_epochs``
    (default ``cfg.epochs``) are the epochs of the whole run when a caller trains the same model in several
    ``fit`` calls (LC's L-steps), which decide whether compiling the step pays.
    """
    cfg.validate()
    trainee = PenalizedModel(model, penalties) if penalties else model
    if compile or penalties:
        compile_model(trainee, data, cfg, optimizer=None if compile else model.optimizer)
    guard = _NaNGuard()
    # the step curve before early stopping, whose restoring of the best weights would blur its last row
    batch = cfg.batch_for(len(data.x_train))
    curve = [curves.StepCurve(cfg.curve_every, data, batch, initial_epoch)] if int(cfg.curve_every) else []
    all_callbacks = [ErrorFromAccuracy(), guard, *curve, *schedule_callbacks(cfg, data.has_val), *callbacks,
                     *tensorboard.callbacks()]
    backup = None
    if backup_dir:
        backup = IntervalBackupAndRestore(backup_dir, backup_interval, fingerprint(model, data, cfg, initial_epoch, run_key))
        all_callbacks.append(backup)
    given = training_input(data, batch)
    planned = int(planned_epochs or cfg.epochs) * int(given["steps_per_epoch"])
    execution = choose_execution(trainee, all_callbacks, steps_per_execution, jit_compile, planned)
    fit_args = dict(
        **given,
        epochs=int(cfg.epochs) + int(initial_epoch),
        initial_epoch=int(initial_epoch),
        validation_data=(data.x_val, data.y_val) if data.has_val else None,
        callbacks=all_callbacks,
        verbose=(1 if sys.stdout.isatty() else 2) if cfg.verbose is None else cfg.verbose,
    )
    start = time.perf_counter()
    try:
        history = fit_with_fallback(trainee, fit_args, execution)
    except Exception:
        curves.discard()
        if backup and not Terminated.requested:  # a failure leaves no checkpoint; a kill or an interrupt keeps it
            backup.discard()
        raise
    if guard.fired:
        curves.discard()
        raise TrainingDiverged(
            f"the loss became NaN/inf at epoch {len(history.epoch) + int(initial_epoch)}: lower --lr "
            f"(now {cfg.lr}) or change --optimizer/--loss; nothing was saved"
        )
    seconds, history = time.perf_counter() - start, {k: [float(v) for v in vals] for k, vals in history.history.items()}
    result = backup.whole(history, seconds) if backup else FitHistory(history, seconds)
    result.execution = execution
    return result
