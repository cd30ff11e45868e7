"""``--method cluster``: tfmot weight sharing into K values per kernel, fine-tuned, stripped.

Each chosen kernel is wrapped by ``cluster_weights``: its weights are replaced by the
nearest of K centroids (initialised by k-means++, linearly, by density or at random); the
centroids and the weights' assignments are fine-tuned on the reference's own loss; the
stripped kernel then holds at most K distinct values (biases are not clustered). With
``preserve_sparsity`` (used by ``prune+cluster``) one centroid is pinned at zero and the
zeros of a pruned kernel stay zeros.
"""
import numpy as np
import tensorflow_model_optimization as tfmot

from kcompress.errors import require
from kcompress.methods import tfmot_common as common
from kcompress.methods.base import CompressionResult

NAME = "cluster"
HELP = "tfmot weight sharing into --clusters K values per kernel (kmeans++/linear/density/random init), fine-tuned"
SHARED_SETTINGS = common.CLUSTER_SETTINGS  # flags shared with prune+cluster (see tfmot_common)
SWEEPABLE = ("clusters",)

DEFAULT_CLUSTERS = 16
# Fine-tuning recipe. tfmot sums the gradients of all weights sharing a centroid into the
# centroid's gradient, so a centroid's gradient is thousands of times a weight's: plain SGD
# at lr 1e-2 throws the centroids far away and LeNet-300-100 falls to chance level. Adam
# scales every variable's step by its own gradient size, so the centroids move by ~lr per
# step whatever the cluster size; at a small lr (1e-4) they settle near the k-means
# solution while the weights' assignments adjust. Measured on models/ref: see the README.
FINETUNE_DEFAULTS = dict(epochs=10, optimizer="adam", lr=1e-4, lr_schedule="fixed", patience=0)


def add_arguments(group):
    common.add_cluster_arguments(group)


def check_settings(settings):
    """Validate the clustering flags before any work starts (called by ``compress``)."""
    clustering_settings(settings)


def clustering_settings(settings):
    """The validated clustering choices: number of clusters and centroid initialisation."""
    k = common.parse_clusters(common.setting(settings, "clusters", DEFAULT_CLUSTERS))
    init = common.setting(settings, "cluster_init", "kmeans++")
    require(init in common.CLUSTER_INITS,
            f"unknown --cluster-init {init!r} (one of {', '.join(common.CLUSTER_INITS)})")
    return dict(clusters=k, cluster_init=init)


def cluster(reference, model, settings, preserve_sparsity=False, defaults=FINETUNE_DEFAULTS):
    """Cluster ``model``'s chosen kernels; returns (plain, history, record)."""
    c = clustering_settings(settings)
    init = tfmot.clustering.keras.CentroidInitialization[common.CLUSTER_INITS[c["cluster_init"]]]

    frozen = []

    def wrap(layer):
        kernel = layer.kernel.numpy()
        values = np.unique(kernel[kernel != 0] if preserve_sparsity else kernel)
        if len(values) <= c["clusters"]:
            # Already within K values (k-means could not even seed K centroids): keep it as it
            # is, frozen while the others fine-tune, so that its values (and zeros) survive.
            layer.trainable = False
            frozen.append(layer.name)
            raise ValueError(f"already holds {len(values)} distinct values (<= {c['clusters']}); kept as is")
        return tfmot.clustering.keras.cluster_weights(
            layer, number_of_clusters=c["clusters"], cluster_centroids_init=init, preserve_sparsity=preserve_sparsity)

    def make_wrap(cfg):
        return wrap

    plain, history, record = common.run_stage(reference, model, settings, defaults, make_wrap,
                                              tfmot.clustering.keras.strip_clustering)
    for name in frozen:
        plain.get_layer(name).trainable = True
    record["clustering"] = {**c, "preserve_sparsity": preserve_sparsity}
    return plain, history, record


def run(reference, settings):
    plain, history, record = cluster(reference, reference.model, settings)
    return CompressionResult(model=plain, record=record, history=history)
