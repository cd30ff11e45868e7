"""What the tfmot methods (prune, cluster, prune+cluster) share.

Each of them does the same four things with a different tfmot wrapper:

1. choose the layers (``--layers``, default every Dense/Conv kernel) and wrap them in the
   model with ``keras.models.clone_model`` (tfmot's documented way); a chosen layer that
   tfmot cannot wrap is skipped and listed, not fatal;
2. fine-tune the wrapped model with the shared loop (:func:`kcompress.training.fit`) on the
   reference's own loss (an LSE-trained index net is fine-tuned with LSE);
3. strip the wrappers (``strip_pruning`` / ``strip_clustering``) and check that no wrapper
   is left: only that plain model is ever saved. Nothing here writes a file, and
   ``fit`` is called without ``backup_dir``, so a wrapped model never reaches disk;
4. record what was done (wrapped, skipped and untouched layers, fine-tuning config).

Also here: the command-line flags of pruning and clustering, defined once and shared by the
three methods (``prune+cluster`` takes both sets), and the parsing of their values.
"""
import math

import numpy as np

from kcompress.backend import keras
from kcompress.errors import UsageError, require
from kcompress.methods.base import finetune_config, target_layers
from kcompress.objectives import predict
from kcompress.training import fit

# Layers with a kernel that tfmot's registries can prune and cluster.
KERNEL_KINDS = ("Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "Conv2DTranspose")
CHECK_SAMPLES = 2000  # test inputs on which the stripped model is compared with the wrapped one
SCHEDULES = ("polynomial", "constant")
# dests of the shared flags: each method lists its own as SHARED_SETTINGS so that the CLI
# passes them on whichever method defined the flag first
PRUNE_SETTINGS = ("sparsity", "schedule", "begin_step", "end_step", "frequency", "m_by_n")
CLUSTER_SETTINGS = ("clusters", "cluster_init")
CLUSTER_INITS = {
    "kmeans++": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density": "DENSITY_BASED",
    "random": "RANDOM",
}


# ---------------------------------------------------------------- flags and their values
def _add_once(group, flag, **kwargs):
    """Add ``flag`` unless another tfmot method already did (the flags are shared)."""
    if flag not in group._option_string_actions:
        group.add_argument(flag, **kwargs)


def add_prune_arguments(group):
    """Flags of magnitude pruning (shared by ``prune`` and ``prune+cluster``)."""
    _add_once(group, "--sparsity", default=None,
              help="target share of zero weights per pruned kernel in [0, 1), or a comma list to sweep "
                   "(default 0.9)")
    _add_once(group, "--schedule", choices=SCHEDULES, default=None,
              help="pruning schedule: polynomial (gradual, Zhu & Gupta) or constant (default polynomial)")
    _add_once(group, "--begin-step", type=int, default=None, help="optimizer step where pruning starts (default 0)")
    _add_once(group, "--end-step", type=int, default=None,
              help="step where the polynomial schedule reaches the target (default: half the fine-tuning steps)")
    _add_once(group, "--frequency", type=int, default=None,
              help="steps between mask updates (default: a tenth of an epoch)")
    _add_once(group, "--m-by-n", default=None,
              help="structured N:M sparsity instead of --sparsity, e.g. 2:4 (2 zeros in every 4 weights)")


def add_cluster_arguments(group):
    """Flags of weight sharing (shared by ``cluster`` and ``prune+cluster``)."""
    _add_once(group, "--clusters", default=None,
              help="number K of shared values per kernel (>= 2), or a comma list to sweep (default 16)")
    _add_once(group, "--cluster-init", choices=tuple(CLUSTER_INITS), default=None,
              help="centroid initialisation (default kmeans++)")


def parse_sparsity(value):
    """``--sparsity`` as a float in [0, 1)."""
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"--sparsity {value!r}: expected a number in [0, 1) (or a comma list to sweep)") from None
    require(0.0 <= s < 1.0, f"--sparsity must be in [0, 1), got {value}")
    return s


def parse_clusters(value):
    """``--clusters`` as an int >= 2."""
    try:
        k = int(str(value))
    except ValueError:
        raise UsageError(f"--clusters {value!r}: expected an integer >= 2 (or a comma list to sweep)") from None
    require(k >= 2, f"--clusters must be at least 2, got {value}")
    return k


def parse_m_by_n(value):
    """``--m-by-n 2:4`` -> ``(2, 4)`` as tfmot's ``sparsity_m_by_n`` expects (m zeros of n)."""
    try:
        m, n = (int(t) for t in str(value).split(":"))
    except ValueError:
        raise UsageError(f"--m-by-n {value!r}: expected M:N such as 2:4") from None
    require(0 < m < n, f"--m-by-n {value}: needs 0 < M < N")
    return m, n


def setting(settings, key, default):
    """``settings[key]``, or ``default`` when unset (None)."""
    value = settings.get(key)
    return default if value is None else value


# ---------------------------------------------------------------- wrapping and stripping
def wrap_layers(model, settings, wrap):
    """Clone ``model`` with the chosen layers wrapped by ``wrap(layer)``.

    Returns ``(wrapped_model, layer_record)`` where the record lists the wrapped layers, the
    chosen ones tfmot refused (with its reason) and the weighted layers left untouched.
    The clone shares the layer objects (and so the weights) of ``model``.
    """
    chosen = {l.name for l in target_layers(model, settings.get("layers"), kinds=KERNEL_KINDS)}
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


def run_stage(reference, model, settings, defaults, make_wrap, strip_fn, callbacks=()):
    """One tfmot stage: wrap the chosen layers, fine-tune, strip. Returns (plain, history, record).

    ``defaults`` are the method's fine-tuning choices (the user's flags override them);
    ``make_wrap(cfg)`` returns the per-layer wrapping function, given the fine-tuning config
    (pruning schedules are counted in optimizer steps). ``fit`` runs without ``backup_dir``:
    the wrapped model is never written to disk, only the stripped one is returned.
    """
    cfg = finetune_config(reference, settings, **defaults)
    wrapped, layers = wrap_layers(model, settings, make_wrap(cfg))
    history = fit(wrapped, reference.data, cfg, callbacks=callbacks)
    plain = strip(wrapped, strip_fn)
    x = reference.data.x_test[:CHECK_SAMPLES]
    diff = float(np.max(np.abs(predict(wrapped, x) - predict(plain, x))))
    record = {"layers": layers, "finetune": cfg.to_dict(), "stripped_vs_wrapped_max_abs_diff": diff,
              "kernels": kernel_summary(plain, layers["wrapped"])}
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


def merge_histories(*parts):
    """Concatenate per-epoch histories of consecutive fine-tuning stages (common keys only)."""
    keys = set(parts[0]).intersection(*parts[1:])
    return {k: [v for p in parts for v in p[k]] for k in sorted(keys)}
