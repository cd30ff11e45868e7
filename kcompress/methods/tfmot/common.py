"""What the tfmot methods (prune, cluster, prune+cluster) share.

Each of them does the same four things with a different tfmot wrapper:

1. choose the layers (``--layers``, default every Dense/Conv kernel) and wrap them in the
   model with ``keras.models.clone_model`` (tfmot's documented way); a chosen layer that
   tfmot cannot wrap is skipped and listed, not fatal;
2. fine-tune the wrapped model with the shared loop (:func:`kcompress.training.loop.fit`) on the
   reference's own loss (an LSE-trained index net is fine-tuned with LSE);
3. strip the wrappers (``strip_pruning`` / ``strip_clustering``) and check that no wrapper
   is left: only that plain model is ever saved. Nothing here writes a file, and
   ``fit`` is called without ``backup_dir``, so a wrapped model never reaches disk;
4. record what was done (wrapped, skipped and untouched layers, fine-tuning config).

The settings (and the fine-tuning recipes behind their defaults) are in
:mod:`kcompress.methods.tfmot.settings`.
"""
import math

import numpy as np

from kcompress.backend import keras
from kcompress.core.objectives import predict, scores
from kcompress.errors import require
from kcompress.methods.base import finetune_config, target_layers
from kcompress.training.loop import fit

# Layers with a kernel that tfmot's registries can prune and cluster.
KERNEL_KINDS = ("Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "Conv2DTranspose")
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
    end the weights of the epoch with the lowest ε are restored (the last epoch's if it is the best).

    tfmot clustering re-assigns weights to centroids every step, so ε jumps by thousands of
    positions between epochs (``bench/results/index_sweeps.md``); the last epoch is a lottery
    ticket, the best one is not."""

    def __init__(self, data):
        super().__init__()
        self.data, self.best, self.best_epoch, self.per_epoch, self._weights = data, math.inf, None, [], None

    def on_epoch_end(self, epoch, logs=None):
        eps = scores(self.data.y_test, predict(self.model, self.data.x_test), self.data)["max_error"]
        self.per_epoch.append(eps)
        if eps < self.best:
            self.best, self.best_epoch, self._weights = eps, epoch + 1, self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._weights is not None and self.best_epoch != len(self.per_epoch):
            self.model.set_weights(self._weights)

    def record(self):
        return {"best_epoch": self.best_epoch, "best_max_error": self.best,
                "epochs_run": len(self.per_epoch), "max_error_per_epoch": self.per_epoch}


def run_stage(reference, model, settings, make_wrap, strip_fn, callbacks=(), keep_best=False):
    """One tfmot stage: wrap the chosen layers, fine-tune, strip. Returns (plain, history, record).

    ``make_wrap(cfg)`` returns the per-layer wrapping function, given the fine-tuning config
    (pruning schedules are counted in optimizer steps). ``fit`` runs without ``backup_dir``:
    the wrapped model is never written to disk, only the stripped one is returned.
    With ``keep_best`` (the clustering stages), a regression reference (a learned index) keeps
    the epoch with the lowest exact ε (:class:`BestMaxError`; ``run.json``: ``best_checkpoint``).
    Pruning does not: an early epoch of a gradual schedule is not yet at the target sparsity.
    """
    cfg = finetune_config(reference, settings)
    wrapped, layers = wrap_layers(model, settings, make_wrap(cfg))
    best = BestMaxError(reference.data) if keep_best and reference.data.task == "regression" else None
    history = fit(wrapped, reference.data, cfg, callbacks=list(callbacks) + ([best] if best else []))
    plain = strip(wrapped, strip_fn)
    x = reference.data.x_test[:CHECK_SAMPLES]
    diff = float(np.max(np.abs(predict(wrapped, x) - predict(plain, x))))
    record = {"layers": layers, "finetune": cfg.to_dict(), "execution": history.execution,
              "stripped_vs_wrapped_max_abs_diff": diff,
              "kernels": kernel_summary(plain, layers["wrapped"])}
    if best is not None:
        record["best_checkpoint"] = best.record()
    return plain, history, record


def steps_per_epoch(reference, cfg):
    """Optimizer steps in one fine-tuning epoch."""
    n = len(reference.data.x_train)
    return math.ceil(n / cfg.batch_for(n))


def kernel_summary(model, names):
    """Per wrapped layer: share of zeros and number of distinct values of the raw kernel."""
    out = {}
    for name in names:
        k = model.get_layer(name).kernel.numpy()
        out[name] = {"sparsity": float(np.mean(k == 0)), "distinct": int(len(np.unique(k)))}
    return out

