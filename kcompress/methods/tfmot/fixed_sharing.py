"""Weight sharing with fixed assignments: ``--assignments fixed`` of ``cluster`` and ``prune+cluster``.

tfmot's clustering wrapper re-assigns every weight to its nearest centroid at every step and
updates the original weights straight through. On a learned index that moves the function in
jumps: ε of ``models/index-ref`` (1,194 positions) went to 2,300–4,500 with K = 16, however the
fine-tuning was set (``bench/results/index_sweeps.md``). Deep Compression's recipe instead
assigns each weight once, by 1-D k-means on the trained kernel, and then trains only the K
shared values (each receives the sum of its weights' gradients) and the biases. The function then
moves smoothly and ε is kept: same reference, Adam 3e-3, batch 4,096, 100 epochs, best-ε epoch
(the defaults): K = 16 1,284 (1.08×), K = 8 2,867 (2.40×); k-means alone, without fine-tuning,
16,035. Batch 256 at lr 1e-3 gave 1,553, batch 16,384 at 1e-2 1,516; a projection variant (train
every weight, then replace each cluster by its mean) 1,999.

:class:`SharedKernel` wraps a layer with one kernel or more (``kernel``, or a separable
convolution's ``depthwise_kernel`` and ``pointwise_kernel``): per kernel it holds a codebook
(trainable) and the assignments (constant); the layer computes with ``codebook[assignments]`` in
place of each kernel, whose variable is kept out of training. A kernel's zeros stay zeros when
asked (a pruned kernel: one of the K values is zero and is not trained; the others may start from a
symmetric codebook, see :func:`initial_codebook`). :func:`strip` writes the shared values into the
kernels and returns the plain model.
"""
import numpy as np

from kcompress.backend import keras, tf
from kcompress.core.kmeans import kmeans_1d
from kcompress.methods.base import kernel_names


def initial_codebook(kernel, k, keep_zeros, symmetric=False):
    """``(codebook, assignments)`` of ``kernel``: ``k`` values by 1-D k-means from quantiles, or,
    ``symmetric``, ±m₁ … ±mₕ with h = ⌊k/2⌋ magnitudes by k-means on |w|. With ``keep_zeros`` the
    values are for the non-zeros only (k − 1 of them, h = ⌊(k − 1)/2⌋; one value when k = 2)
    and the zeros get index ``len(codebook)``: the pinned zero. The values then train independently.

    Why symmetric: a pruned kernel's non-zeros are two lobes with a gap at zero, and k-means
    seeded by quantiles gives each lobe values in proportion to its count. On the learned index
    (50 % pruned, ε 958) ``dense_1`` got 12 negative values and 3 positive ones (0.11, 0.51, 1.03),
    and ε after training the values stopped at 1,751 (1.47× the reference's 1,194) whatever the
    fine-tuning; the symmetric 14 values gave 1,211, one k-means per sign (8 + 7 values) 1,407.
    It is not always better: 90 % pruned + 16 values, 3,288 symmetric vs 2,760 k-means; K = 4
    (ternary ±m) 26.6k vs 10.1k; a dense kernel (one lobe) K = 16 1,354 vs 1,284, K = 8 2,966 vs
    2,867. Hence ``--codebook auto`` (:mod:`kcompress.methods.tfmot.cluster`)."""
    flat = kernel.ravel().astype(np.float64)
    free = flat != 0 if keep_zeros else np.ones(flat.shape, bool)
    n = k - 1 if keep_zeros else k
    if symmetric and n >= 2:
        half = n // 2
        magnitudes, labels = _kmeans(np.abs(flat[free]), half)
        codebook = np.concatenate([-magnitudes[::-1], magnitudes])
        labels = np.where(flat[free] < 0, half - 1 - labels, half + labels)
    else:
        codebook, labels = _kmeans(flat[free], n)
    assignments = np.full(flat.shape, len(codebook), np.int32)
    assignments[free] = labels
    return codebook.astype(np.float32), assignments.reshape(kernel.shape)


def _kmeans(values, k):
    """``(codebook, labels)``: Lloyd's algorithm on ``values`` from ``k`` quantiles."""
    return kmeans_1d(values, np.quantile(values, (np.arange(k) + 0.5) / k))


class SharedKernel(keras.layers.Wrapper):
    """``layer`` computing with ``codebook[assignments]`` (plus a pinned zero when
    ``keep_zeros``) in place of each of its kernels (``codebooks`` and ``assignments``: one per
    kernel name, e.g. a separable convolution's depthwise and pointwise kernels); only the
    codebooks and the layer's other weights train."""

    def __init__(self, layer, codebooks, assignments, keep_zeros=False, **kwargs):
        super().__init__(layer, **kwargs)
        self.init_codebooks = {n: np.asarray(c, np.float32) for n, c in codebooks.items()}
        self.init_assignments = {n: np.asarray(a, np.int32) for n, a in assignments.items()}
        self.keep_zeros = bool(keep_zeros)

    def build(self, input_shape=None):
        super().build(input_shape)
        self.codebooks, self.assignments = {}, {}
        for name, codebook in self.init_codebooks.items():
            self.codebooks[name] = self.add_weight(f"codebook_{name}", shape=codebook.shape, trainable=True,
                                                   initializer=keras.initializers.Constant(codebook))
            self.assignments[name] = self.add_weight(
                f"assignments_{name}", shape=self.init_assignments[name].shape, dtype=tf.int32, trainable=False,
                initializer=keras.initializers.Constant(self.init_assignments[name]))
        # The kernel variables are replaced in the computation: keep them out of training (and put
        # them back where they were in the layer's weights when unwrapping).
        kernels = [getattr(self.layer, n) for n in self.init_codebooks]
        self._layer_trainable = list(self.layer._trainable_weights)
        self.layer._trainable_weights = [w for w in self._layer_trainable if not any(w is k for k in kernels)]
        self.layer._non_trainable_weights.extend(kernels)

    def shared_kernel(self, name):
        codebook = self.codebooks[name]
        values = tf.concat([codebook, tf.zeros([1], codebook.dtype)], 0) if self.keep_zeros else codebook
        return lookup(values, tf.convert_to_tensor(self.assignments[name]))

    def call(self, inputs, training=None):
        kwargs = {"training": training} if self.layer._call_spec.expects_training_arg else {}
        variables = {n: getattr(self.layer, n) for n in self.codebooks}
        for name in variables:  # untracked: the variables stay the layer's
            object.__setattr__(self.layer, name, self.shared_kernel(name))
        try:
            return self.layer.call(inputs, **kwargs)
        finally:
            for name, variable in variables.items():
                object.__setattr__(self.layer, name, variable)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def unwrap(self):
        """The inner layer with the shared values written into its kernels, trainable again."""
        kernels = []
        for name in self.codebooks:
            kernels.append(getattr(self.layer, name))
            kernels[-1].assign(self.shared_kernel(name))
        self.layer._non_trainable_weights = [w for w in self.layer._non_trainable_weights
                                             if not any(w is k for k in kernels)]
        self.layer._trainable_weights = self._layer_trainable
        return self.layer


def lookup(values, assignments):
    """``values[assignments]`` whose gradient reaches ``values`` as a dense per-value sum.

    ``tf.gather``'s own gradient is sparse (one slice per weight, thousands per value), and the
    optimizer's sparse update of so many repeated indices is slow under XLA: LeNet-300-100 with
    16 values per kernel trained at 24 s per epoch compiled against 2 s without XLA; summed
    per value first, it trains at the plain step's cost."""
    @tf.custom_gradient
    def gather(v):
        def grad(upstream):
            return tf.math.unsorted_segment_sum(tf.reshape(upstream, [-1]), tf.reshape(assignments, [-1]),
                                                tf.shape(v)[0])
        return tf.gather(v, assignments), grad

    return gather(values)


def wrap(layer, k, keep_zeros, symmetric=False):
    """``layer`` wrapped in a :class:`SharedKernel` of ``k`` values per trained kernel."""
    initial = {n: initial_codebook(getattr(layer, n).numpy(), k, keep_zeros, symmetric) for n in kernel_names(layer)}
    return SharedKernel(layer, {n: c for n, (c, _) in initial.items()}, {n: a for n, (_, a) in initial.items()},
                        keep_zeros, name=f"shared_{layer.name}")


def strip(model):
    """The plain model: every :class:`SharedKernel` replaced by its layer holding the shared values
    (the layers, and so their weights, are those of ``model``, as tfmot's strip functions do)."""
    def unwrap(layer):
        return layer.unwrap() if isinstance(layer, SharedKernel) else layer

    return keras.models.clone_model(model, clone_function=unwrap)
