"""Learning-Compression (LC) inside a Keras user's own training script.

The pieces wrap the one LC implementation (:class:`kcompress.methods.lc.algorithm.LC`, the loop behind
``kcompress compress --method lc``): the user compiles and fits with their own optimizer, loss, data,
metrics and callbacks; a callback runs LC's C-steps and multiplier updates every ``l_epochs`` epochs::

    import tensorflow as tf
    import kcompress.keras as kk

    lc = kk.LC(model, tasks=["dense_1,dense_2:quant:k=4"], mu0=9e-5, mu_factor=1.1, mu_steps=40, l_epochs=4)
    lc.model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                     metrics=["accuracy"])
    lc.model.fit(train, validation_data=val, epochs=lc.epochs(), callbacks=[lc.callback(), my_callbacks...])
    compressed, stats = lc.finalize()   # a plain Keras model with w = Δ(Θ), and its storage in bits

``compile(..., jit_compile=True, steps_per_execution=100)`` runs the L-steps as ``compress --method lc`` runs
them (XLA, 100 steps per call: 37-58 % less time per epoch of LeNet-300-100, bench/results/README.md,
"Execution paths"; LC from a script both ways against the CLI: bench/results/lc_script.md).

Tasks are the strings of ``--task`` (:mod:`kcompress.methods.lc.tasks`): ``"all:prune-l0:kappa=0.05"``,
``"each:quant:k=2"``, ``"dense_2:lowrank:rank=10"``, ``"all:quant:k=2+prune-l0:kappa=0.01"``.
"""
from kcompress.backend import keras
from kcompress.core.batchnorm import recalibrate
from kcompress.errors import require
from kcompress.methods.lc import method as lc_method
from kcompress.methods.lc.algorithm import LC as _LCLoop
from kcompress.methods.lc.factorize import factorised_model
from kcompress.methods.lc.schedule import Schedule
from kcompress.methods.lc.settings import LCSettings
from kcompress.methods.lc.tasks import TaskSpec, parse_task

_DEFAULTS = LCSettings(task=("all:quant:k=2",))  # the CLI's defaults: one source for both


def model_tasks(model, tasks, layers=None):
    """The :class:`~kcompress.methods.lc.tasks.Task` objects of ``tasks`` (task strings or parsed specs) on
    ``model``, as ``compress --method lc`` resolves them: ``all``/``each`` mean ``layers`` (unset: every
    layer with a kernel), low-rank tasks take Dense and Conv2D kernels.

    >>> [t.describe() for t in model_tasks(model, ["each:quant:k=4"])]
    ['dense:quant:k=4', 'dense_1:quant:k=4']
    """
    specs = [t if isinstance(t, TaskSpec) else parse_task(t, f"task {t!r}") for t in tasks]
    require(specs, "LC needs at least one task, e.g. 'all:prune-l0:kappa=0.05'")
    return lc_method.model_tasks(model, specs, layers)


class LC:
    """LC on ``model``'s kernels, trained by the user's own ``compile`` and ``fit``.

    ``model``: a built Keras (tf-keras) model holding the reference weights w̄; it is trained in place.
    ``tasks``: task strings (``"dense_1:quant:k=4"``, ``"all:prune-l0:kappa=0.1"``; see the module).
    The μ schedule is ``mu0·mu_factor^k`` for ``k < mu_steps``, or the explicit list ``mus``; each μ step
    is an L-step of ``l_epochs`` epochs. ``lr_decay``: set the optimizer's learning rate to lr₀·decay^step
    at each μ step, lr₀ being its rate when training starts (the CLI's L-steps do this with 0.99); unset,
    the learning rate is left to the optimizer and the user's callbacks. ``multipliers=False`` runs the
    quadratic-penalty method. ``layers``: the layers ``all``/``each`` mean (unset: every layer with a kernel).
    Defaults are ``compress --method lc``'s.

    ``lc.model`` is the model to compile and fit (``model`` with the penalty μ/2‖w − Δ(Θ) − λ/μ‖² added to
    the training loss and logged as ``lc_penalty``; evaluation reports the loss without it). It is a
    wrapper: save ``model`` (or its weights), or the model :meth:`finalize` returns, not ``lc.model``.
    Training may span several ``fit`` calls (the callback counts epochs across them); an early stop ends
    LC at the last completed μ step.

    >>> lc = LC(model, ["all:prune-l0:kappa=0.1"], mu0=1e-3, mu_factor=1.5, mu_steps=10, l_epochs=2)
    >>> lc.model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    >>> lc.model.fit(dataset, epochs=lc.epochs(), callbacks=[lc.callback()], verbose=0)
    >>> compressed, stats = lc.finalize()  # 10 % of the kernels' entries non-zero
    """

    def __init__(self, model, tasks, mu0=_DEFAULTS.mu0, mu_factor=_DEFAULTS.mu_factor, mu_steps=_DEFAULTS.mu_steps,
                 mus=None, l_epochs=_DEFAULTS.l_epochs, lr_decay=None, multipliers=_DEFAULTS.multipliers, layers=None):
        require(isinstance(model, keras.Model) and model.built, "LC needs a built Keras model (call it once, or "
                                                                "give it an Input)")
        options = dict(l_epochs=int(l_epochs), lr_decay=1.0 if lr_decay is None else float(lr_decay),
                       multipliers=bool(multipliers))
        schedule = Schedule(tuple(map(float, mus)), **options) if mus is not None else \
            Schedule.geometric(mu0, mu_factor, mu_steps, **options)
        self.lr_decay = lr_decay
        self.loop = _LCLoop(model, None, model_tasks(model, tasks, layers), None, schedule)
        self.epochs_done = 0

    @property
    def model(self):
        """The model to compile and fit: the user's model with LC's penalty in its training loss.

        >>> lc.model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        """
        return self.loop.trainee

    @property
    def schedule(self):
        """The μ schedule (:class:`~kcompress.methods.lc.schedule.Schedule`: ``mus``, ``l_epochs``, ...).

        >>> lc.schedule.mus[-1]
        """
        return self.loop.schedule

    @property
    def steps(self):
        """One record per μ step done: ``step``, ``mu``, ``lr``, ``loss``, ``penalty`` (the last epoch's mean
        μ/2‖w − Δ(Θ) − λ/μ‖²), ``distance`` (‖w − Δ(Θ)‖ after the C-step), ``c_seconds``.

        >>> [round(s["distance"], 3) for s in lc.steps]
        """
        return self.loop.steps

    def epochs(self):
        """The epochs of the whole run, ``len(mus) · l_epochs``: ``fit``'s ``epochs``.

        >>> lc.model.fit(dataset, epochs=lc.epochs(), callbacks=[lc.callback()])
        """
        return len(self.schedule.mus) * int(self.schedule.l_epochs)

    def callback(self):
        """The Keras callback that drives LC: before the first epoch the DC step (Θ = C-step of w̄) and the
        first penalty; after every ``l_epochs`` epochs the C-step, the λ update and the next μ (after the last
        step it stops training). Each epoch it logs ``lc_mu`` (the epoch's μ) and ``lc_distance``
        (‖w − Δ(Θ)‖: after the C-step at the end of an L-step, to the last C-step's Δ(Θ) otherwise); put it
        before callbacks that read them (``EarlyStopping``, ``CSVLogger``, ``TensorBoard``).

        >>> lc.model.fit(dataset, epochs=lc.epochs(),
        ...              callbacks=[lc.callback(), keras.callbacks.EarlyStopping("loss", patience=3)])
        """
        return LCCallback(self)

    def begin(self):
        """The DC step and the first penalty (once; the callback calls it when training begins)."""
        if self.loop.lambdas is None:
            self.loop.begin()
            self.loop.set_penalty(0, self.schedule.mus[0])

    def finalize(self, x=None):
        """The compressed model and its statistics: ``(model, stats)``.

        ``model`` is the model given to :class:`LC`, its task kernels set to Δ(Θ) of the last C-step (a
        pruned kernel holds zeros, a quantized one only its codebook's values), low-rank layers split in
        two where that is smaller (then a new model); ``x``: inputs on which batch-norm statistics are
        measured again for these weights. Called before any training, it is direct compression.
        ``stats``: ``bits``, ``reference_bits``, ``bits_ratio`` (Θ of each task plus every other weight at
        32 bits), ``tasks`` (each task's Θ: ``params``, ``bits``), ``steps``, ``factorised``,
        ``batchnorm_recalibrated``.

        >>> compressed, stats = lc.finalize(x=x_train)
        >>> compressed.save("compressed.keras"); print(stats["bits_ratio"])
        """
        self.begin()
        self.loop.set_kernels(self.loop.deltas)
        model = self.loop.model
        recalibrated = recalibrate(model, x) if x is not None else []
        final, factorised = factorised_model(model, self.loop.tasks)
        tasks = [{"task": t.describe(), **t.compression.storage()} for t in self.loop.tasks]
        return final, {**self.loop.storage(), "tasks": tasks, "steps": list(self.steps), "factorised": factorised,
                       "batchnorm_recalibrated": recalibrated}


class LCCallback(keras.callbacks.Callback):
    """Runs the LC steps of ``lc`` (an :class:`LC`) between the epochs of ``lc.model.fit``: made by
    :meth:`LC.callback`, which see.

    >>> lc.model.fit(dataset, epochs=lc.epochs(), callbacks=[LCCallback(lc)])
    """

    def __init__(self, lc):
        super().__init__()
        self.lc = lc

    def on_train_begin(self, logs=None):
        require(self.model is self.lc.model, "the LC callback must be given to lc.model.fit (the model with "
                                             "the penalty), not to the model passed to LC")
        fresh = self.lc.loop.lambdas is None
        self.lc.begin()
        if fresh and self.lc.lr_decay is not None:
            self.lc.loop.lr0 = float(keras.backend.get_value(self.model.optimizer.learning_rate))
            self.lc.loop.set_penalty(0, self.lc.schedule.mus[0])

    def on_epoch_end(self, epoch, logs=None):
        lc, logs = self.lc, logs if logs is not None else {}
        mus, l_epochs = lc.schedule.mus, int(lc.schedule.l_epochs)
        if len(lc.steps) >= len(mus):  # the schedule is done: more epochs change nothing LC keeps
            self.model.stop_training = True
            return
        lc.epochs_done += 1
        logs["lc_mu"] = mus[len(lc.steps)]
        if lc.epochs_done % l_epochs:  # the same keys every epoch (a CSVLogger fixes its columns at the first)
            logs["lc_distance"] = lc.loop.distance()
            return
        step = len(lc.steps)
        c_seconds, distance = lc.loop.end_step(mus[step])
        lc.steps.append({"step": step, "mu": mus[step], "lr": _lr(self.model.optimizer), "loss": logs.get("loss"),
                         "penalty": logs.get(lc.loop.penalty.name), "distance": distance,
                         "c_seconds": c_seconds})
        logs["lc_distance"] = distance
        if step + 1 < len(mus):
            lc.loop.set_penalty(step + 1, mus[step + 1])
        else:
            self.model.stop_training = True


def _lr(optimizer):
    """The optimizer's learning rate now, or None where it is a schedule object."""
    try:
        return float(keras.backend.get_value(optimizer.learning_rate))
    except (TypeError, ValueError):
        return None
