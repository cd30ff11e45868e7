"""The pruner masks (``kcompress compress --method pruner``) inside a Keras user's own training script.

As tfmot's ``prune_low_magnitude`` + ``UpdatePruningStep`` + ``strip_pruning``: :class:`Pruner` puts a gate
σ(wᵢ) after each unit of the chosen layers, the user compiles and fits the gated model with their own
optimizer (for the network weights; the gates learn by their own Adam at ``gate_lr``), loss, data, metrics
and callbacks, the callback raises λ and μ on the pruning loss until exactly n gates per layer are open, and
:meth:`Pruner.finalize` removes the closed units for real: a plain, smaller model. It is the command's
implementation (:class:`kcompress.methods.pruner.method.GatePhase`), not a copy; the command's fine-tuning
after the removal is left to the user's own fit of the smaller model.

A complete example (a Dense net whose 64 hidden units become 16)::

    import kcompress.keras as kk               # first: it makes TensorFlow's Keras tf-keras (Keras 2)
    import numpy as np
    import tensorflow as tf
    from kcompress.backend import keras        # tf-keras, the Keras kcompress works with

    x = np.random.default_rng(0).random((2000, 20), dtype="float32"); y = (x[:, :10].sum(1) > 5).astype("int64")
    inputs = keras.Input((20,))
    outputs = keras.layers.Dense(2)(keras.layers.Dense(64, activation="relu", name="hidden")(inputs))
    model = keras.Model(inputs, outputs)
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(2000, seed=0).batch(64)

    pr = kk.Pruner(model, keep_units={"hidden": 16}, gate_lr=0.1, lambda_every=2)
    pr.model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pr.model.fit(train, epochs=pr.max_epochs(), callbacks=[pr.callback(train)], verbose=0)
    small, stats = pr.finalize()
    print(small.get_layer("hidden").units, stats["converged"])     # 16 True

Under ``tf.distribute.MirroredStrategy`` build the model (and compile) in ``strategy.scope()``; the
Pruner makes its gates, λ, μ and gate optimizer in the model's scope.
"""
from kcompress.backend import keras
from kcompress.errors import require
from kcompress.methods.base import FinetuneSettings
from kcompress.methods.pruner import gates as G
from kcompress.methods.pruner.method import GatePhase
from kcompress.methods.pruner.settings import MU_RULES, PrunerSettings

# The settings of the command's own training (optimizer, learning rate, batch size, epochs, schedules, early
# stopping, fine-tuning): in a script the user's compile, fit and callbacks decide them.
SCRIPT_OWNED = frozenset(FinetuneSettings.names()) - {"layers", "gamma"}


def pruner_settings(settings=None, **options):
    """The :class:`~kcompress.methods.pruner.settings.PrunerSettings` of a :class:`Pruner`: ``settings`` as
    given, or the command's defaults with ``options`` (its fields; ``keep_units`` may be a dict, ``layers`` a
    list), so that no default is copied here. The command's training fields are refused in ``options``.

    >>> pruner_settings(keep_units={"dense": 30}, gate_lr=0.1).keep_units
    (('dense', 30),)
    """
    require(settings is None or not options, "Pruner: give a PrunerSettings or keyword settings, not both")
    if settings is None:
        owned = sorted(set(options) & SCRIPT_OWNED)
        require(not owned, f"Pruner: {', '.join(owned)} belong to your own compile and fit, not to the Pruner")
        if isinstance(options.get("keep_units"), dict):
            options["keep_units"] = tuple(options["keep_units"].items())
        if isinstance(options.get("layers"), (list, tuple)):
            options["layers"] = ",".join(options["layers"])
        settings = PrunerSettings.from_dict(options)
    require(isinstance(settings, PrunerSettings), f"Pruner: settings must be a PrunerSettings, got {settings!r}")
    require(settings.gate_lr_schedule in ("fixed", "on-pruning"),
            f"Pruner: gate_lr_schedule {settings.gate_lr_schedule!r} is your fit's to run "
            "(keras.callbacks.LearningRateScheduler or ReduceLROnPlateau)")
    return settings


class Pruner:
    """The pruner masks on ``model``'s units, trained by the user's own ``compile`` and ``fit``.

    ``model``: a built functional Keras (tf-keras) model; it is left as it is (the gated model is a copy
    sharing nothing with it). ``settings``: a :class:`~kcompress.methods.pruner.settings.PrunerSettings`, or
    its fields as keywords, defaults the command's: ``keep`` (share of units kept per layer),
    ``keep_units`` (``{"dense": 30}``), ``layers`` (unset: every prunable layer but the outputs),
    ``rejection``, ``gate_lr``, ``gate_epsilon``, ``gate_init_spread``, ``pruner_optimizer`` (gradient or
    markov; markov on one replica only), the λ/μ rule (``lambda_start``, ``lambda_factor``,
    ``lambda_every``, ``lambda_rule``, ``mu``, ...), ``max_epochs``, and ``gate_lr_schedule="on-pruning"``
    (the learning rate ×``gamma`` once ``lr_drop_share`` of the gates due to close have closed). The
    command's training settings (``lr``, ``optimizer``, ``epochs``, ...) are refused: your compile and fit
    set them.

    ``pr.model`` is the model to compile and fit: the gated model, trained on L_task + μ·λ·(L_sel + L_rej)
    (``pruner_penalty`` and ``total_loss`` in its logs; evaluation reports the task loss of the gated
    model). It is a wrapper: checkpoint it with ``ModelCheckpoint(save_weights_only=True)``, and save the
    model :meth:`finalize` returns. Training may span several ``fit`` calls (the λ/μ schedule carries on).

    >>> pr = Pruner(model, keep=0.3)
    >>> pr.model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    >>> pr.model.fit(dataset, epochs=pr.max_epochs(), callbacks=[pr.callback(dataset)], verbose=0)
    >>> small, stats = pr.finalize()  # 30 % of each hidden layer's units, removed for real
    """

    def __init__(self, model, settings=None, **options):
        require(isinstance(model, keras.Model) and model.built, "Pruner needs a built Keras model (call it once, "
                                                                "or give it an Input)")
        self.settings = pruner_settings(settings, **options)
        self.phase = GatePhase(model, self.settings)
        self.epochs_done = 0

    @property
    def model(self):
        """The model to compile and fit: ``model`` with a gate after each targeted layer, and the penalty.

        >>> pr.model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        """
        return self.phase.trainer

    @property
    def targets(self):
        """``{layer: n}``: the units kept per gated layer (a layer stands for its channel group).

        >>> Pruner(model, keep=0.5).targets
        {'dense': 32, 'dense_1': 16}
        """
        return dict(self.phase.targets)

    def max_epochs(self):
        """The epoch limit of the gate training (``max_epochs``): ``fit``'s ``epochs``; the callback stops
        training earlier, once the gates have converged.

        >>> pr.model.fit(dataset, epochs=pr.max_epochs(), callbacks=[pr.callback(dataset)])
        """
        return int(self.settings.max_epochs)

    def callback(self, x=None, y=None, steps=None):
        """The Keras callback that drives the gates (see :class:`PrunerCallback`).

        ``x`` (with ``y`` where ``x`` holds only inputs; ``steps`` to read part of it): training data in any
        form ``evaluate`` takes (a ``tf.data.Dataset``, a ``keras.utils.Sequence``, arrays). When training
        first begins, the compiled loss of the model as given (every gate open) over it seeds the adaptive
        or balanced μ, as the command's loss over the training split does; a fixed ``mu``, or a later fit
        (which carries on with λ and μ as they are), needs no data.

        >>> pr.model.fit(dataset, epochs=pr.max_epochs(),
        ...              callbacks=[pr.callback(dataset), keras.callbacks.CSVLogger("gates.csv")])
        """
        require(x is not None or self.settings.mu not in MU_RULES or self.phase.rule is not None,
                f"Pruner.callback(x): give the training data; its task loss seeds the {self.settings.mu} μ")
        return PrunerCallback(self, x, y, steps)

    def finalize(self):
        """The smaller model and the gate phase's statistics: ``(model, stats)``.

        ``model``: a new plain Keras model (no gates), the units whose gates closed removed for real (the n
        with the largest gates kept per layer, converged or not), made in the model's strategy scope; compile
        and fine-tune it as you like. ``stats``: ``targets``, ``kept_units`` (indices per layer), ``units``
        (before/after), ``converged``, ``converged_epoch``, ``gate_epochs``, ``open_at_end``,
        ``lambda_raises``, ``final_lambda``, ``final_mu``, ``lr_dropped_epoch``, ``gate_values``, ``groups``.

        >>> small, stats = pr.finalize()
        >>> small.save("small.keras"); print(stats["kept_units"], stats["converged"])
        """
        require(self.phase.rule is not None, "Pruner.finalize: first fit pr.model with pr.callback(...)")
        return self.phase.pruned(), self.phase.stats(self.epochs_done)


class PrunerCallback(keras.callbacks.Callback):
    """Runs the pruner's λ/μ rule between the epochs of ``pruner.model.fit``: made by :meth:`Pruner.callback`.

    When training first begins it measures the seed of μ on ``x`` and sets λ, μ; after every epoch it logs
    ``l_sel``, ``l_rej``, ``l_pru``, ``lam``, ``mu``, ``lr``, ``open_gates``, ``open_<layer>``,
    ``gate_weight_var`` and ``gate_motion``, sets the next λ and μ, and stops training once every gate is
    within ``gate_epsilon`` of 0 or 1 with exactly n open per layer. Put it before callbacks that read
    these logs (``EarlyStopping``, ``CSVLogger``, ``TensorBoard``).

    >>> pr.model.fit(dataset, epochs=pr.max_epochs(), callbacks=[PrunerCallback(pr, dataset)])
    """

    def __init__(self, pruner, x=None, y=None, steps=None):
        super().__init__()
        self.pruner, self.data = pruner, dict(x=x, y=y, steps=steps)

    def on_train_begin(self, logs=None):
        require(self.model is self.pruner.model, "the Pruner's callback must be given to pr.model.fit (the gated "
                                                 "model), not to the model passed to Pruner")
        first = self.pruner.phase.rule is None
        self.rules = self.pruner.phase.callbacks(self.task_loss() if first else None)
        for rule in self.rules:
            rule.set_model(self.model)
            if first:  # a later fit carries on with λ and μ as they are
                rule.on_train_begin(logs)

    def task_loss(self):
        """The compiled loss of the model as given (every gate open: σ = 1 exactly) over the data given (NaN
        without data: a fixed μ reads none)."""
        if self.data["x"] is None:
            return float("nan")
        with G.gates_open(self.pruner.phase.penalty.gates):
            return float(self.model.evaluate(**self.data, verbose=0, return_dict=True)["loss"])

    def on_epoch_end(self, epoch, logs=None):
        for rule in self.rules:  # epochs counted across fits, each of which numbers its own from 0
            rule.on_epoch_end(self.pruner.epochs_done, logs)
        self.pruner.epochs_done += 1
