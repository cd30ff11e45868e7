"""``--method prune+cluster``: prune, then sparsity-preserving clustering; zeros stay zeros.

Stage 1 is ``--method prune`` (same flags, same defaults); stage 2 is ``--method cluster``
on the pruned model with ``preserve_sparsity``: one of the K centroids is pinned at zero
and the pruned positions are masked, so the stripped kernels keep every zero and hold at
most K distinct values (zero and K − 1 shared non-zero values). DESIGN §7 then stores
each kernel as a position code of its non-zeros plus ⌈log₂ k⌉ bits per non-zero and a
codebook. Both sweep axes work together: ``--sparsity 0.9,0.95 --clusters 4,8``.
"""
from kcompress.methods import tfmot_cluster, tfmot_common, tfmot_prune
from kcompress.methods.base import CompressionResult

NAME = "prune+cluster"
HELP = "prune (the --method prune flags), then sparsity-preserving clustering (the --method cluster flags)"
SWEEPABLE = ("sparsity", "clusters")
SHARED_SETTINGS = tfmot_common.PRUNE_SETTINGS + tfmot_common.CLUSTER_SETTINGS  # the flags of prune and cluster


def add_arguments(group):
    tfmot_common.add_prune_arguments(group)
    tfmot_common.add_cluster_arguments(group)


def check_settings(settings):
    tfmot_prune.check_settings(settings)
    tfmot_cluster.check_settings(settings)


def run(reference, settings):
    pruned, h_prune, r_prune = tfmot_prune.prune(reference, reference.model, settings)
    plain, h_cluster, r_cluster = tfmot_cluster.cluster(reference, pruned, settings, preserve_sparsity=True)
    history = tfmot_common.merge_histories(h_prune, h_cluster)
    boundary = len(h_prune["loss"])

    def plots(folder):
        from kcompress.plots import training_curves

        training_curves(history, folder / "training.png", title=NAME, markers=[(boundary + 0.5, "cluster")])

    record = {"prune": r_prune, "cluster": r_cluster, "stage_epochs": [boundary, len(h_cluster["loss"])]}
    return CompressionResult(model=plain, record=record, history=history, plots=plots)
