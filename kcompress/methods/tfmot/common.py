"""What the tfmot methods (prune, cluster, prune+cluster) share.

Each of them does the same four things with a different tfmot wrapper:

1. choose the layers (``--layers``, default every layer of
   :data:`~kcompress.methods.base.KERNEL_KINDS`: Dense, Conv1D/2D/3D, their transposes, depthwise
   and separable convolutions) and wrap them in the model with ``keras.models.clone_model``
   (tfmot's documented way); a chosen layer that cannot be wrapped is skipped with a one-line
   notice and listed, not fatal (exit 2 only when no chosen layer is left);
2. fine-tune the wrapped model with the shared loop (:func:`kcompress.training.loop.fit`) on the
   reference's own loss (an LSE-trained index net is fine-tuned with LSE);
3. strip the wrappers (``strip_pruning`` / ``strip_clustering``) and check that no wrapper
   is left: only that plain model is ever saved. Nothing here writes a file, and
   ``fit`` is called without ``backup_dir``, so a wrapped model never reaches disk;
4. record what was done (wrapped, skipped and untouched layers, fine-tuning config).

Which kernels tfmot 0.8.1 itself handles (its registries, ``sparsity/keras/prune_registry.py``
and ``clustering/keras/clustering_registry.py``): ``kernel`` of Dense, Conv1D/2D/3D and the
transposed convolutions; of SeparableConv1D/2D only ``pointwise_kernel``; of DepthwiseConv2D
nothing (clustering: "non-clusterable due to big unrecoverable accuracy loss"); DepthwiseConv1D
is not registered at all. Every kernel is compressed all the same: pruning hands tfmot's wrapper the
layer's kernels itself (:func:`make_prunable`), and clustering gives a layer with a kernel tfmot
leaves out fixed assignments (:mod:`~kcompress.methods.tfmot.fixed_sharing`, ``run.json``:
``clustering.fixed_in``). Biases and batch-norm parameters are never touched.

The settings (and the fine-tuning recipes behind their defaults) are in
:mod:`kcompress.methods.tfmot.settings`.
"""
import math
from dataclasses import replace

import numpy as np

from kcompress.backend import keras
from kcompress.core.objectives import predict, scores
from kcompress.errors import require
from kcompress.methods.base import KERNEL_KINDS, finetune_config, kernel_names, target_layers
from kcompress.training.checkpoint import FitHistory
from kcompress.training.history import merge_histories
from kcompress.training.loop import fit

CHECK_SAMPLES = 2000  # test inputs on which the stripped model is compared with the wrapped one
CLUSTER_INITS = {
    "kmeans++": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density": "DENSITY_BASED",
    "random": "RANDOM",
}


# ---------------------------------------------------------------- wrapping and stripping
def wrap_layers(model, settings, wrap):
    """Clone ``model`` with the chosen layers wrapped by ``wrap(layer)``.

    Returns ``(wrapped_model, layer_record)`` where the record lists the wrapped layers, the
    chosen ones tfmot refused (with its reason) and the weighted layers left untouched.
    The clone shares the layer objects (and so the weights) of ``model``.
    """
    chosen = {l.name for l in target_layers(model, settings.layers, kinds=KERNEL_KINDS)}
    wrapped, skipped = [], {}

    def clone(layer):
        if layer.name not in chosen:
            return layer
        try:
            out = wrap(layer)
        except (ValueError, TypeError, NotImplementedError) as e:
            skipped[layer.name] = str(e).splitlines()[0][:160] or e.__class__.__name__
            return layer
        wrapped.append(layer.name)
        return out

    result = keras.models.clone_model(model, clone_function=clone)
    require(wrapped, f"--layers: tfmot can wrap none of {', '.join(sorted(chosen))} ({'; '.join(skipped.values())})")
    for name, why in skipped.items():
        print(f"skipped layer {name}: {why}")
    untouched = [l.name for l in model.layers if l.weights and l.name not in chosen]
    return result, {"wrapped": wrapped, "skipped": skipped, "untouched": untouched}


def strip(wrapped, strip_fn):
    """The plain Keras model inside ``wrapped``; fails loudly if any wrapper is left."""
    plain = strip_fn(wrapped)
    left = [l.name for l in plain.layers if isinstance(l, keras.layers.Wrapper)]
    if left:
        raise RuntimeError(f"tfmot wrappers left after stripping: {', '.join(left)}")
    return plain


class BestMaxError(keras.callbacks.Callback):
    """Regression references: after each epoch, the exact ε (max |error| in positions, numpy, on
    the whole test split, the number ``compress`` reports) of the model being fine-tuned; at the
    end the weights of the epoch with the lowest ε are restored (the last epoch's if it is the best;
    epoch 0, the starting point, if no epoch beat it).

    tfmot clustering re-assigns weights to centroids every step, so ε jumps by thousands of
    positions between epochs (``bench/results/index_sweeps.md``); the last epoch is a lottery
    ticket, the best one is not."""

    def __init__(self, data):
        super().__init__()
        self.data, self.best, self.best_epoch, self.per_epoch, self._weights = data, math.inf, None, [], None
        self.start = None

    def _epsilon(self):
        return scores(self.data.y_test, predict(self.model, self.data.x_test), self.data)["max_error"]

    def on_train_begin(self, logs=None):
        """The starting point counts too (epoch 0): a fine-tuning that only loses ε returns it."""
        self.start = self.best = self._epsilon()
        self.best_epoch, self._weights = 0, self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        eps = self._epsilon()
        self.per_epoch.append(eps)
        if eps < self.best:
            self.best, self.best_epoch, self._weights = eps, epoch + 1, self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._weights is not None and self.best_epoch != len(self.per_epoch):
            self.model.set_weights(self._weights)

    def record(self):
        return {"best_epoch": self.best_epoch, "best_max_error": self.best, "start_max_error": self.start,
                "epochs_run": len(self.per_epoch), "max_error_per_epoch": self.per_epoch}


def run_stage(reference, model, settings, make_wrap, strip_fn, callbacks=(), keep_best=False, parts=()):
    """One tfmot stage: wrap the chosen layers, fine-tune, strip. Returns (plain, history, record).

    ``make_wrap(cfg)`` returns the per-layer wrapping function, given the fine-tuning config
    (pruning schedules are counted in optimizer steps). ``fit`` runs without ``backup_dir``:
    the wrapped model is never written to disk, only the stripped one is returned.
    With ``keep_best`` (the clustering stages), a regression reference (a learned index) keeps
    the epoch with the lowest exact ε (:class:`BestMaxError`; ``run.json``: ``best_checkpoint``).
    Pruning does not: an early epoch of a gradual schedule is not yet at the target sparsity.
    ``parts``: functions of the wrapped model, each called before an equal share of the epochs (fixed
    sharing's stages); the best epoch is then kept within each part, and recorded for the last.
    """
    cfg = stage_config(reference, settings)
    wrapped, layers = wrap_layers(model, settings, make_wrap(cfg))
    history, best, parts = [], None, parts or (lambda m: None,)
    for i, prepare in enumerate(parts):
        prepare(wrapped)
        epochs = cfg.epochs * (i + 1) // len(parts) - cfg.epochs * i // len(parts)
        if not epochs:  # more parts than epochs: this part's weights are fixed with the next part's
            continue
        best = BestMaxError(reference.data) if keep_best and reference.data.task == "regression" else None
        history.append(fit(wrapped, reference.data, replace(cfg, epochs=epochs),
                           callbacks=list(callbacks) + ([best] if best else [])))
    history = FitHistory(merge_histories(*history), sum(h.seconds for h in history), execution=history[-1].execution)
    # BestMaxError's predictions inside fit made Keras cache a predict function for the epoch's
    # steps per call; when an epoch is one batch (a small index, fixed sharing's batch of 4,096)
    # it ran one step per call, and the check below then got the first 1,024 outputs only.
    wrapped.predict_function = None
    plain = strip(wrapped, strip_fn)
    x = reference.data.x_test[:CHECK_SAMPLES]
    before, after = predict(wrapped, x), predict(plain, x)
    diff = float(np.max(np.abs(before - after)))
    # float32 rounding grows with the outputs (logits near 20 are 2e-6 apart): judge it relative
    scale = max(float(np.max(np.abs(after))), 1e-12)
    record = {"layers": layers, "finetune": cfg.to_dict(), "execution": history.execution,
              "stripped_vs_wrapped_max_abs_diff": diff, "stripped_vs_wrapped_max_rel_diff": diff / scale,
              "kernels": kernel_summary(plain, layers["wrapped"])}
    if best is not None:
        record["best_checkpoint"] = best.record()
    return plain, history, record


def stage_config(reference, settings):
    """The fine-tuning config, its batch capped at the training split's size (fixed sharing's
    recipe asks for 4,096, more than a small index has), so that ``run.json``'s
    ``finetune.batch_size`` is the batch really used."""
    cfg = finetune_config(reference, settings)
    n = len(reference.data.x_train)
    if cfg.batch_for(n) <= n:
        return cfg
    print(f"batch size {cfg.batch_size} is larger than the {n} training samples: batches of {n}")
    return replace(cfg, batch_size=n)


def steps_per_epoch(reference, cfg):
    """Optimizer steps in one fine-tuning epoch."""
    n = len(reference.data.x_train)
    return math.ceil(n / cfg.batch_for(n))


def kernels(layer):
    """``{name: array}`` of ``layer``'s kernels (one, or depthwise and pointwise)."""
    return {n: getattr(layer, n).numpy() for n in kernel_names(layer)}


def make_prunable(layer):
    """``layer`` with every kernel handed to tfmot's pruning wrapper (its custom-layer hook
    ``get_prunable_weights``): tfmot's registry prunes no depthwise kernel. Undone by :func:`unhook`."""
    if kernel_names(layer):
        layer.get_prunable_weights = lambda: [getattr(layer, n) for n in kernel_names(layer)]
    return layer


def unhook(model):
    """``model`` without the hooks of :func:`make_prunable` (they would outlive the wrapper)."""
    for layer in model.layers:
        layer.__dict__.pop("get_prunable_weights", None)
    return model


def kernel_summary(model, names):
    """Per wrapped layer and kernel: share of zeros and number of distinct values of the raw
    kernel (keyed by the layer's name, or ``layer/depthwise_kernel`` for the other kernels)."""
    out = {}
    for name in names:
        for attr, k in kernels(model.get_layer(name)).items():
            key = name if attr == "kernel" else f"{name}/{attr}"
            out[key] = {"sparsity": float(np.mean(k == 0)), "distinct": int(len(np.unique(k)))}
    return out

