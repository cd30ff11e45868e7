"""``--method cluster``: tfmot weight sharing into K values per kernel, fine-tuned, stripped.

Each chosen kernel is wrapped by ``cluster_weights``: its weights are replaced by the
nearest of K centroids (initialised by k-means++, linearly, by density or at random); the
centroids and the weights' assignments are fine-tuned on the reference's own loss; the
stripped kernel then holds at most K distinct values (biases are not clustered). With
``preserve_sparsity`` (used by ``prune+cluster``) one centroid is pinned at zero and the
zeros of a pruned kernel stay zeros. ``--method cluster`` decides per kernel: a kernel of
which at least :data:`SPARSE_SHARE` is exactly zero (a model pruned before, e.g. by LC in the
auto search's ``lc>cluster`` chain) keeps its zeros; a dense kernel does not give up one of its
K values to zero.

``--assignments fixed`` (the default on a regression reference, e.g. a learned index) replaces
tfmot's wrapper by :mod:`kcompress.methods.tfmot.fixed_sharing`: assigned once, the K values
trained. tfmot cannot keep zeros with K = 2 (it needs a zero and two more values), so such a
kernel takes fixed assignments also under ``--assignments tfmot`` (``run.json``:
``clustering.fixed_in``), and so does a layer with a kernel tfmot's registry does not cluster (a
depthwise or separable convolution's ``depthwise_kernel``): every kernel ends with at most K values.

Fixed assignments start from k-means values or from a symmetric codebook (``--codebook``). Neither
is better everywhere on a pruned kernel (``fixed_sharing.initial_codebook``), so ``auto`` fine-tunes
from both when a kernel keeps its zeros and keeps the one with the lower error on the training
split (``run.json``: ``clustering.codebook`` and ``codebook_train_errors``); the stage then costs twice.
"""
import numpy as np
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import ClusteringRegistry

from kcompress.core.objectives import predict, score_name, scores
from kcompress.core.surgery import clone
from kcompress.methods.base import CompressionResult, kernel_names, unset_values
from kcompress.methods.tfmot import common, fixed_sharing

SPARSE_SHARE = 0.1  # a trained dense kernel holds no exact zeros; a pruned one holds most


def cluster(reference, model, settings, preserve_sparsity=None):
    """Cluster ``model``'s chosen kernels with :class:`ClusterSettings` ``settings``;
    ``preserve_sparsity`` None decides per kernel (see the module). Returns (plain, history, record)."""
    settings = settings.for_task(reference.data.task)
    if settings.codebook != "auto":
        return _cluster(reference, model, settings, preserve_sparsity)
    fresh = clone(model)  # the stage trains the layers of the model it wraps
    first = _cluster(reference, model, settings.replace(codebook="kmeans"), preserve_sparsity)
    pruned_fixed = set(first[2]["clustering"]["fixed_in"]) & set(first[2]["clustering"]["zeros_kept_in"])
    if not pruned_fixed:
        return first
    second = _cluster(reference, fresh, settings.replace(codebook="symmetric"), preserve_sparsity)
    errors = {r[2]["clustering"]["codebook"]: train_error(r[0], reference.data) for r in (first, second)}
    chosen = min((first, second), key=lambda r: errors[r[2]["clustering"]["codebook"]])
    chosen[2]["clustering"]["codebook_train_errors"] = errors
    return chosen


def train_error(model, data):
    """The task's error (test error in %, or ε) of ``model`` on the training split."""
    return float(scores(data.y_train, predict(model, data.x_train), data)[score_name(data)])


def _cluster(reference, model, settings, preserve_sparsity):
    k, mode, symmetric = settings.clusters, settings.assignments, settings.codebook == "symmetric"
    stages = settings.fixed_stages
    init = tfmot.clustering.keras.CentroidInitialization[common.CLUSTER_INITS[settings.cluster_init]]

    frozen, sparse, fixed = [], [], []

    def wrap(layer):
        kernels = list(common.kernels(layer).values())
        joined = np.concatenate([a.ravel() for a in kernels])
        keep_zeros = np.mean(joined == 0) >= SPARSE_SHARE if preserve_sparsity is None else preserve_sparsity
        if keep_zeros:
            sparse.append(layer.name)
        values = max(len(np.unique(a[a != 0] if keep_zeros else a)) for a in kernels)
        if values <= k:
            # Already within K values (k-means could not even seed K centroids): keep it as it
            # is, frozen while the others fine-tune, so that its values (and zeros) survive.
            layer.trainable = False
            frozen.append(layer.name)
            raise ValueError(f"already holds {values} distinct values (<= {k}); kept as is")
        if mode == "fixed" or (keep_zeros and k < 3) or not tfmot_clusters_every_kernel(layer):
            fixed.append(layer.name)
            return fixed_sharing.wrap(layer, k, keep_zeros, symmetric, staged=stages > 1)
        return tfmot.clustering.keras.cluster_weights(
            layer, number_of_clusters=k, cluster_centroids_init=init, preserve_sparsity=bool(keep_zeros))

    def make_wrap(cfg):
        return wrap

    def strip(wrapped):
        return fixed_sharing.strip(tfmot.clustering.keras.strip_clustering(wrapped))

    parts = [lambda m, share=share: fixed_sharing.fix_all(m, share) for share in fixed_sharing.stage_shares(stages)]
    plain, history, record = common.run_stage(reference, model, settings, make_wrap, strip, keep_best=True,
                                              parts=parts if stages > 1 else ())
    for name in frozen:
        plain.get_layer(name).trainable = True
    record["clustering"] = {"clusters": k, "assignments": mode, "cluster_init": settings.cluster_init,
                            "codebook": settings.codebook if fixed else None,
                            "fixed_stages": stages if fixed else None,
                            "zeros_kept_in": sparse, "fixed_in": fixed}
    return plain, history, record


def tfmot_clusters_every_kernel(layer):
    """Whether tfmot's registry clusters all of ``layer``'s kernels: not a depthwise kernel (it
    lists none of DepthwiseConv2D's and only a separable layer's ``pointwise_kernel``)."""
    return set(ClusteringRegistry._LAYERS_WEIGHTS_MAP.get(type(layer), ())) >= set(kernel_names(layer))


def run(reference, settings):
    plain, history, record = cluster(reference, reference.model, settings)
    return CompressionResult(model=plain, record=record, history=history,
                             resolved=unset_values(settings, record["finetune"]))
