"""Stepping α during training: the one rule of ``compress --method alpha`` and of
:class:`kcompress.keras.alpha.AlphaSchedule`.

:class:`AlphaScheduleCallback` trains a blended model (:func:`~kcompress.methods.alpha.blend.blend_model`) at
each α of a list in turn. An α ends after :meth:`AlphaSettings.epochs_at <kcompress.methods.alpha.settings.
AlphaSettings.epochs_at>` epochs or, sooner, once the learning rate has been cut ``alpha_lr_drops`` times
during it (by the α's own learning-rate rule or by any other callback). Then the next α is set and the
learning rate goes back to its value when training began (note 002: "the learning rate is reset to 0.001
whenever α drops, i.e. the learning-rate schedule restarts"); after the last α training stops.

The α's learning-rate rule (``lr_schedule``: fixed, step or plateau, :func:`~kcompress.training.loop.
schedule_callbacks`) belongs to the callback, not to ``fit``, because it must restart at each α: a Keras
``ReduceLROnPlateau`` given to ``fit`` would keep the best loss of the α before, and the jump of the loss
when α drops would read as a plateau. A fresh rule is made at the end of each α's first epoch, when the
logs show whether there is validation data (plateau watches ``val_loss``, else ``loss``).

The command trains each α in a ``fit`` of its own (a fresh optimizer per α; at α = 0 the stripped model),
giving this callback that one α; a user's script trains the whole list in one ``fit``.
"""
from dataclasses import replace

from kcompress.backend import keras
from kcompress.errors import require
from kcompress.methods.alpha import blend
from kcompress.training.config import TrainConfig
from kcompress.training.loop import schedule_callbacks


def lr_config(settings):
    """The :class:`TrainConfig` of the α's learning-rate rule where no reference gives one (a user's
    script): ``settings``' schedule, ``gamma``, ``step_size`` and ``alpha_patience``, watching ``val_loss``.

    >>> lr_config(AlphaSettings(alpha_patience=3)).plateau_patience
    3
    """
    return TrainConfig.from_dict({**settings.train_overrides(), "plateau_patience": settings.alpha_patience})


def learning_rate(optimizer):
    """The optimizer's learning rate now: a number the callback can set back (not a schedule).

    >>> learning_rate(keras.optimizers.Adam(1e-3))
    0.0010000000474974513
    """
    rate = getattr(optimizer, "_learning_rate", optimizer.learning_rate)  # new optimizers keep a schedule there
    require(not isinstance(rate, keras.optimizers.schedules.LearningRateSchedule),
            "the α-schedule resets the learning rate at each α: give the optimizer a number, not a "
            "LearningRateSchedule (lr_schedule='step' or 'plateau' lowers it within an α)")
    return float(keras.backend.get_value(optimizer.learning_rate))


class AlphaScheduleCallback(keras.callbacks.Callback):
    """Trains the blended model through ``alphas`` (see the module): each epoch logs ``alpha``, the α it
    trained at; :attr:`steps` records each α done. ``settings``: an
    :class:`~kcompress.methods.alpha.settings.AlphaSettings` (epochs per α, ``alpha_lr_drops``);
    ``config``: the :class:`TrainConfig` of the α's learning-rate rule (see :func:`lr_config`).

    The state lives in the callback: several ``fit`` calls continue the schedule where the last stopped.

    >>> callback = AlphaScheduleCallback([0.5, 0.0], AlphaSettings(epochs_per_alpha=3), lr_config(AlphaSettings()))
    >>> blended.fit(x, y, epochs=6, callbacks=[callback])   # α = 0.5 for 3 epochs, then α = 0 for 3
    >>> callback.steps   # [{'alpha': 0.5, 'epochs': 3, 'lr_drops': 0, 'loss': ...}, {'alpha': 0.0, ...}]
    """

    def __init__(self, alphas, settings, config):
        super().__init__()
        self.alphas, self.settings, self.config = [float(a) for a in alphas], settings, config
        self.steps, self.lr0, self.index = [], None, 0

    @property
    def done(self):
        """Whether every α has been trained."""
        return self.index >= len(self.alphas)

    @property
    def alpha(self):
        """The α being trained (the last one once :attr:`done`)."""
        return self.alphas[min(self.index, len(self.alphas) - 1)]

    def on_train_begin(self, logs=None):
        require(blend.blend_layers(self.model) or self.alphas == [0.0],
                "the α-schedule's callback trains a blended model: give it to al.model.fit, not to the fit of "
                "the model passed to AlphaSchedule")
        if self.lr0 is None:  # the first fit; later ones continue
            self.lr0 = learning_rate(self.model.optimizer)
            self._start(0)

    def on_epoch_begin(self, epoch, logs=None):
        for rule in self.rules or ():
            rule.on_epoch_begin(self.epochs, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.done:  # a fit with more epochs than the schedule: nothing more to train
            self.model.stop_training = True
            return
        logs = logs if logs is not None else {}
        if self.rules is None:
            self.rules = self._make_rules(logs)
        for rule in self.rules:
            rule.on_epoch_end(self.epochs, logs)
        logs["alpha"] = self.alpha
        self.epochs += 1
        lr = learning_rate(self.model.optimizer)
        if lr < self.last_lr * (1 - 1e-6):
            self.drops, self.last_lr = self.drops + 1, lr
        if self._ended():
            self.steps.append({"alpha": self.alpha, "epochs": self.epochs, "lr_drops": self.drops,
                               **{k: logs[k] for k in ("loss", "val_loss") if k in logs}})
            self._start(self.index + 1)
            if self.done:
                self.model.stop_training = True

    def _ended(self):
        """Whether the α ends now: its epochs are done, or the learning rate was cut often enough."""
        drops = int(self.settings.alpha_lr_drops)
        return self.epochs >= self.settings.epochs_at(self.alpha) or bool(drops and self.drops >= drops)

    def _start(self, index):
        """Begin the α at ``index`` (if any is left): set it, and the learning rate back to its start."""
        self.index, self.epochs, self.drops, self.rules, self.last_lr = index, 0, 0, None, self.lr0
        if not self.done:
            blend.set_alpha(self.model, self.alpha)
            keras.backend.set_value(self.model.optimizer.learning_rate, self.lr0)

    def _make_rules(self, logs):
        """A fresh learning-rate rule for this α, started: the plateau rule watches validation values where
        the logs have them. Made after the α's first epoch, whose start it would only set to lr₀ again."""
        has_val = any(k.startswith("val_") for k in logs)
        rules = schedule_callbacks(replace(self.config, lr=self.lr0, patience=0), has_val)
        for rule in rules:
            rule.set_model(self.model)
            rule.on_train_begin()
        return rules
