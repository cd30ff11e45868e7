"""The α-schedule inside a Keras user's own training script.

The pieces run the one implementation behind ``kcompress compress --method alpha``
(:mod:`kcompress.methods.alpha`): the same branches, blend and stripping, and the same callback stepping α.
Each chosen Dense/Conv2D layer gets a parallel rank-r branch; the layer's output becomes
``α·original + (1 − α)·branch``; α falls along the schedule (by default note 002's α = e^(−0.05k) until
below 0.05, then 0) with the learning rate reset at each α; at α = 0 the originals go::

    import kcompress.keras as kk
    from kcompress.backend import keras

    al = kk.AlphaSchedule(model, prune=0.65, alpha_decay=0.1, epochs_per_alpha=20)
    al.model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    al.model.fit(train, validation_data=val, epochs=al.epochs(), callbacks=[al.callback(), my_callbacks...])
    small, stats = al.finalize()   # a plain Keras model: the branches, without the original layers

Settings are :class:`~kcompress.methods.alpha.settings.AlphaSettings` fields, with its defaults (the CLI's).
Your script decides the optimizer, its learning rate (the value the callback resets to at each α), the loss,
data, batch size, class weights and callbacks.
"""
from kcompress.backend import keras
from kcompress.errors import require
from kcompress.methods.alpha import blend, method
from kcompress.methods.alpha.settings import AlphaSettings
from kcompress.methods.alpha.stepping import AlphaScheduleCallback, lr_config

__all__ = ["AlphaSchedule", "AlphaScheduleCallback"]

# settings of the command that a script sets in its own compile and fit
_SCRIPT_OWNS = ("optimizer", "lr", "momentum", "batch_size", "curve_every", "patience")


def _script_settings(settings, options):
    """The :class:`AlphaSettings` of ``settings`` (one, or None for the defaults) changed by ``options``."""
    owned = sorted(set(options) & set(_SCRIPT_OWNS))
    require(not owned, f"AlphaSchedule: {', '.join(owned)} belong(s) to your own compile and fit (the callback "
                       "resets the learning rate to your optimizer's at each α)")
    s = AlphaSettings.from_dict({**(settings.to_dict() if settings is not None else {}), **options})
    require(s.alpha_list is None or s.alpha_schedule == "list",
            "alpha_list is the schedule of alpha_schedule='list': give both (else it is unused)")
    require(s.target == "labels", "AlphaSchedule trains on the targets your fit gives: for a teacher target, "
                                  "fit on the original model's outputs with loss='mse'")
    return s


def _check_ranks(ranks, options):
    """Exit 2 unless ``ranks`` is unset or a non-empty ``{layer name: int ≥ 1}`` given without ``layers``."""
    if ranks is None:
        return
    valid = isinstance(ranks, dict) and ranks and all(type(r) is int and r >= 1 for r in ranks.values())
    require(valid, f"ranks: expected a {{layer name: rank >= 1}} dict, got {ranks!r}")
    require(not options.get("layers"), "give ranks or layers, not both (ranks names the layers)")


class AlphaSchedule:
    """The α-schedule on ``model``'s Dense/Conv2D layers, trained by the user's own ``compile`` and ``fit``.

    ``model``: a built functional or Sequential Keras (tf-keras) model; it is left as it is (the blend is a
    new model with copies of its layers). ``ranks``: ``{layer name: r}``, the branches' ranks (a branch of
    Dense(m → n) holds r·(m + n) + n parameters); unset, the CLI's choice: the layers of ``layers`` (unset:
    the Dense/Conv2D layers holding ≥ 1 % of those parameters or multiply-adds, not the output layers), each
    at the rank dropping ``prune`` of its parameters. ``settings``: an
    :class:`~kcompress.methods.alpha.settings.AlphaSettings` to start from; ``options``: its fields to change:
    the schedule (``alpha_schedule``, ``alpha_decay``, ``alpha_min``, ``alpha_list``), ``epochs_per_alpha``,
    ``epochs`` (at α = 0), the α's learning-rate rule (``lr_schedule``, ``gamma``, ``alpha_patience``,
    ``step_size``), ``alpha_lr_drops``, ``blend_at``, ``conv_branch``, ``freeze_original``.

    How α falls (:class:`AlphaScheduleCallback`): an α lasts ``epochs_per_alpha`` epochs, or ends sooner once
    the learning rate has been cut ``alpha_lr_drops`` times during it (0: never) — by the α's own rule
    (default plateau: ×``gamma`` after ``alpha_patience`` epochs without a better ``val_loss``, or ``loss``
    without validation data; restarted at each α) or by any callback of yours. Then the next α is set and
    the learning rate goes back to the optimizer's value when training began. Leave ``ReduceLROnPlateau``
    out: it would keep its best loss across α changes (use ``lr_schedule`` instead).

    ``al.model`` is the blended model to compile and fit (the original layers frozen unless
    ``freeze_original=False``); each epoch logs ``alpha``. Training may span several ``fit`` calls; an early
    stop leaves the schedule where it was. :meth:`finalize` gives the plain model at α = 0.

    >>> al = AlphaSchedule(model, ranks={"dense_1": 16}, alpha_schedule="list", alpha_list="0.8,0.4",
    ...                    epochs_per_alpha=5)
    >>> al.model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    >>> al.model.fit(dataset, epochs=al.epochs(), callbacks=[al.callback()], verbose=0)  # α = 0.8, 0.4, 0
    >>> small, stats = al.finalize()   # dense_1 replaced by dense_1_narrow (16 units) → dense_1_proj
    """

    def __init__(self, model, settings=None, ranks=None, **options):
        require(isinstance(model, keras.Model) and model.built and getattr(model, "_is_graph_network", False),
                "AlphaSchedule needs a built functional or Sequential Keras model (a subclassed model has no "
                "layer graph to add branches to)")
        _check_ranks(ranks, options)
        self.original = model
        self.settings = _script_settings(settings, options)
        self.branches = method.plan_branches(model, self.settings, ranks)
        self.model = method.blended_model(model, self.settings, self.branches)
        self._callback = AlphaScheduleCallback(self.settings.alphas(), self.settings, lr_config(self.settings))

    @property
    def alphas(self):
        """The α values trained, after α = 1 (the original, needing no training), ending with 0.

        >>> AlphaSchedule(model, alpha_decay=0.5, alpha_min=0.2).alphas   # e^(−0.5k) ≥ 0.2, then 0
        [0.6065306597126334, 0.36787944117144233, 0.22313016014842982, 0.0]
        """
        return self._callback.alphas

    @property
    def steps(self):
        """One record per α done: ``alpha``, ``epochs``, ``lr_drops`` and its last epoch's ``loss``
        (``val_loss``).

        >>> [(s["alpha"], s["epochs"]) for s in al.steps]
        """
        return self._callback.steps

    def epochs(self):
        """The most epochs of the schedule, every α lasting its epoch count: ``fit``'s ``epochs`` (the
        callback stops training after α = 0 where α's end sooner).

        >>> al.model.fit(dataset, epochs=al.epochs(), callbacks=[al.callback()])
        """
        return self.settings.total_epochs()

    def callback(self):
        """The Keras callback that steps α (the same one at each call: the schedule's position lives in it).
        It logs ``alpha`` each epoch, and ``lr`` under a step or plateau rule; put it before callbacks that
        read them (``CSVLogger``, ``EarlyStopping``).

        >>> al.model.fit(dataset, epochs=al.epochs(),
        ...              callbacks=[al.callback(), keras.callbacks.CSVLogger("alpha.csv")])
        """
        return self._callback

    def finalize(self):
        """The plain model at α = 0 and its statistics: ``(model, stats)``.

        ``model`` has ``model``'s structure with each blended layer replaced by its trained branch
        (``<name>_narrow`` → ``<name>_proj``; a pooled conv branch at stride 2 without its max-pool) and every
        other layer with the trained weights: it computes what ``al.model`` computes at α = 0. ``stats``:
        ``branches`` (per layer: ``rank``, ``branch_params``, ``original_params``, ``pooled``),
        ``prunable_params``, ``branch_params``, ``kept_share``, ``params`` and ``reference_params`` (the whole
        models), ``schedule``, ``steps`` (see :attr:`steps`), ``alpha`` (where training left α: 0 once done).

        >>> small, stats = al.finalize()
        >>> small.save("small.keras"); print(stats["kept_share"], stats["params"])
        """
        small = blend.strip_model(self.original, self.model)
        blended_alpha = float(blend.blend_layers(self.model)[0].alpha.numpy())
        return small, {"branches": self.branches, **method.branch_totals(self.branches),
                       "params": small.count_params(), "reference_params": self.original.count_params(),
                       "schedule": list(self.alphas), "steps": list(self.steps), "alpha": blended_alpha}
