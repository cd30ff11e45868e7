"""``--method lc``: the Learning-Compression algorithm on the reference's kernels.

``all``/``each`` mean every kernel of the layers in :data:`~kcompress.methods.base.KERNEL_KINDS`
(Dense, convolutions of every kind; a separable convolution's depthwise and pointwise kernels as
one task); low-rank tasks take Dense and Conv2D kernels, the layers that can be factorised.

The settings (tasks, μ schedule) are :class:`~kcompress.methods.lc.settings.LCSettings`; the
loop is :mod:`~kcompress.methods.lc.algorithm`; the compression types (the C-steps) are the
plain numpy classes of :mod:`~kcompress.methods.lc.types`. The result is the model with
w = Δ(Θ), its batch-norm statistics measured again for those weights
(:mod:`~kcompress.core.batchnorm`), low-rank layers split in two (:mod:`~kcompress.methods.lc.factorize`).
"""
from kcompress.core.batchnorm import recalibrate
from kcompress.core.objectives import primary_metric
from kcompress.methods.base import (
    KERNEL_KINDS,
    CompressionResult,
    finetune_config,
    kernel_names,
    target_layers,
    unset_values,
)
from kcompress.methods.lc.algorithm import LC
from kcompress.methods.lc.factorize import FACTORISABLE, factorised_model
from kcompress.methods.lc.plots import plot_steps
from kcompress.methods.lc.tasks import resolve


def model_tasks(model, specs, layers=None):
    """The tasks of the parsed task ``specs`` on ``model``: ``all``/``each`` mean ``layers`` (unset: every
    layer with a kernel); low-rank tasks take the layers that can be factorised."""
    kernels = {l.name: [tuple(getattr(l, n).shape) for n in kernel_names(l)] for l in model.layers if kernel_names(l)}
    targets = [l.name for l in target_layers(model, layers, kinds=KERNEL_KINDS)]
    matrices = [l.name for l in model.layers if type(l).__name__ in FACTORISABLE]
    return resolve(specs, kernels, targets, matrices)


def run(reference, settings):
    model = reference.model
    tasks = model_tasks(model, settings.task_specs(), settings.layers)
    cfg = finetune_config(reference, settings, verbose=0)
    lc = LC(model, reference.data, tasks, cfg, settings.schedule()).run()
    recalibrated = recalibrate(model, reference.data.x_train)  # w = Δ(Θ) now: batch-norm must see it
    final, factorised = factorised_model(model, tasks)
    record = {**lc.record(), "factorised": factorised, "batchnorm_recalibrated": recalibrated}
    ref_error = reference.run.metric(primary_metric(reference.data))
    title = "LC: " + "; ".join(t["task"] for t in record["tasks"])

    def plots(folder):
        plot_steps(record, folder / "lc_steps.png", ref_error, title)

    return CompressionResult(final, record, lc.history, plots, resolved=unset_values(settings, cfg.to_dict()))
