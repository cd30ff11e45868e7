"""``--method prune+cluster``: prune, then sparsity-preserving clustering; zeros stay zeros.

Stage 1 is ``--method prune`` (same settings, same defaults); stage 2 is ``--method cluster``
on the pruned model with ``preserve_sparsity``: one of the K centroids is pinned at zero and
the pruned positions are masked, so the stripped kernels keep every zero and hold at most K
distinct values (zero and K − 1 shared non-zero values). :mod:`kcompress.core.stats` then
stores each kernel as a position code of its non-zeros plus ⌈log₂ k⌉ bits per non-zero and a
codebook. Both sweep axes work together: ``--sparsity 0.9,0.95 --clusters 4,8``.
"""
from kcompress.methods.base import CompressionResult, unset_values
from kcompress.methods.tfmot import cluster, prune
from kcompress.reporting.plots import training_curves
from kcompress.training.history import merge_histories


def run(reference, settings):
    prune_settings, cluster_settings = settings.stages()
    pruned, h_prune, r_prune = prune.prune(reference, reference.model, prune_settings)
    plain, h_cluster, r_cluster = cluster.cluster(reference, pruned, cluster_settings, preserve_sparsity=True)
    history = merge_histories(h_prune, h_cluster)
    boundary = len(h_prune["loss"])

    def plots(folder):
        training_curves(history, folder / "training.png", title=settings.NAME, markers=[(boundary + 0.5, "cluster")])

    record = {"prune": r_prune, "cluster": r_cluster, "stage_epochs": [boundary, len(h_cluster["loss"])]}
    used = {**prune.used(r_prune), "cluster_epochs": r_cluster["finetune"]["epochs"]}
    return CompressionResult(model=plain, record=record, history=history, plots=plots,
                             resolved=unset_values(settings, used))
