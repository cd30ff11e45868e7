"""``--method lc``: the Learning-Compression algorithm on the reference's kernels.

The settings (tasks, μ schedule) are :class:`~kcompress.methods.lc.settings.LCSettings`; the
loop is :mod:`~kcompress.methods.lc.algorithm`; the compression types (the C-steps) are the
plain numpy classes of :mod:`~kcompress.methods.lc.types`. The result is the model with
w = Δ(Θ), low-rank layers split in two (:mod:`~kcompress.methods.lc.factorize`).
"""
from kcompress.core.objectives import primary_metric
from kcompress.methods.base import CompressionResult, finetune_config, target_layers
from kcompress.methods.lc.algorithm import LC
from kcompress.methods.lc.factorize import factorised_model
from kcompress.methods.lc.plots import plot_steps
from kcompress.methods.lc.tasks import resolve


def run(reference, settings):
    model = reference.model
    kernels = {l.name: tuple(l.kernel.shape) for l in model.layers if hasattr(l, "kernel")}
    targets = [l.name for l in target_layers(model, settings.layers)]
    tasks = resolve(settings.task_specs(), kernels, targets)
    cfg = finetune_config(reference, settings, verbose=0)
    lc = LC(model, reference.data, tasks, cfg, settings.schedule()).run()
    final, factorised = factorised_model(model, tasks)
    record = {**lc.record(), "factorised": factorised}
    ref_error = (reference.run.get("metrics") or {}).get(primary_metric(reference.data.task))
    title = "LC: " + "; ".join(t["task"] for t in record["tasks"])

    def plots(folder):
        plot_steps(record, folder / "lc_steps.png", ref_error, title)

    return CompressionResult(final, record, lc.history, plots)
