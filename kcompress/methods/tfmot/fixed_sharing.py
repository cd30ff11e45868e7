"""Weight sharing with fixed assignments: ``--assignments fixed`` of ``cluster`` and ``prune+cluster``.

tfmot's clustering wrapper re-assigns every weight to its nearest centroid at every step, which moves a
learned index's function in jumps (``bench/results/index_sweeps.md``). Here the K values come from 1-D
k-means on the trained kernel and each weight is then fixed to one of them for good, in stages
(``--fixed-stages``, INQ's idea with Deep Compression's shared values): ½, ¾, ⅞ … of the weights, the
farthest from their value first, while the weights still free train on to make up for them; the K values
(each receiving the sum of its weights' gradients) and the biases train throughout. Fixing all at once
(one stage) loses more ε (``bench/results/index_seeds.md``).

:class:`SharedKernel` wraps a layer with one kernel or more (``kernel``, or a separable
convolution's ``depthwise_kernel`` and ``pointwise_kernel``): per kernel it holds a codebook
(trainable) and the assignments; the layer computes with ``codebook[assignments]`` in place of each
kernel, whose variable is kept out of training (staged: the fixed weights take their shared value, the
others their own, which train; :meth:`SharedKernel.fix` fixes more). A kernel's zeros stay zeros when
asked (a pruned kernel: one of the K values is zero and is not trained; the others may start from a
symmetric codebook, see :func:`initial_codebook`). :func:`strip` writes the shared values into the
kernels and returns the plain model.
"""
import numpy as np

from kcompress.backend import keras, tf
from kcompress.core.kmeans import exact_codebook, kmeans_1d
from kcompress.methods.base import kernel_names


def initial_codebook(kernel, k, keep_zeros, symmetric=False):
    """``(codebook, assignments)`` of ``kernel``: ``k`` values by 1-D k-means (:func:`_kmeans`), or,
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


EXACT_MAX = 8192  # kernels up to this size get the optimal k-means (about 2 s at 8,192 weights and K = 16)


def _kmeans(values, k):
    """``(codebook, labels)``: the optimal 1-D k-means of a small kernel (:func:`exact_codebook`), else
    Lloyd's algorithm from ``k`` quantiles."""
    start = exact_codebook(values, k) if values.size <= EXACT_MAX else np.quantile(values, (np.arange(k) + 0.5) / k)
    return kmeans_1d(values, start)


class SharedKernel(keras.layers.Wrapper):
    """``layer`` computing with ``codebook[assignments]`` (plus a pinned zero when
    ``keep_zeros``) in place of each of its kernels (``codebooks`` and ``assignments``: one per
    kernel name, e.g. a separable convolution's depthwise and pointwise kernels); only the
    codebooks and the layer's other weights train."""

    def __init__(self, layer, codebooks, assignments, keep_zeros=False, staged=False, **kwargs):
        super().__init__(layer, **kwargs)
        self.init_codebooks = {n: np.asarray(c, np.float32) for n, c in codebooks.items()}
        self.init_assignments = {n: np.asarray(a, np.int32) for n, a in assignments.items()}
        self.keep_zeros, self.staged = bool(keep_zeros), bool(staged)

    def build(self, input_shape=None):
        super().build(input_shape)
        self.codebooks, self.assignments = {}, {}
        for name, codebook in self.init_codebooks.items():
            self.codebooks[name] = self.add_weight(f"codebook_{name}", shape=codebook.shape, trainable=True,
                                                   initializer=keras.initializers.Constant(codebook))
            self.assignments[name] = self.add_weight(
                f"assignments_{name}", shape=self.init_assignments[name].shape, dtype=tf.int32, trainable=False,
                initializer=keras.initializers.Constant(self.init_assignments[name]))
        self.fixed = {name: self.add_weight(f"fixed_{name}", shape=self.init_assignments[name].shape, trainable=False,
                                            initializer=keras.initializers.Constant(self._pinned(name)))
                      for name in self.init_codebooks} if self.staged else {}
        # The kernel variables are replaced in the computation: keep them out of training unless
        # staged, where the weights not yet fixed train (and put them back where they were in the
        # layer's weights when unwrapping).
        kernels = [] if self.staged else [getattr(self.layer, n) for n in self.init_codebooks]
        self._layer_trainable = list(self.layer._trainable_weights)
        self.layer._trainable_weights = [w for w in self._layer_trainable if not any(w is k for k in kernels)]
        self.layer._non_trainable_weights.extend(kernels)

    def _pinned(self, name):
        """1 where a weight is fixed from the start (a pinned zero), else 0."""
        return (self.init_assignments[name] == len(self.init_codebooks[name])).astype(np.float32)

    def fix(self, share):
        """Staged: fix ``share`` of each kernel's free (not pinned) weights to their nearest shared value,
        those farthest from one first (INQ's order, by distance), so that the weights still free are
        the nearest and train on to make up for the fixed ones; ``share`` 1 fixes them all."""
        for name, mask in self.fixed.items():
            w, codebook = getattr(self.layer, name).numpy().ravel(), self.codebooks[name].numpy()
            fixed, assigned, pinned = mask.numpy().ravel() > 0, self.assignments[name].numpy().ravel(), self._pinned(name)
            nearest = np.abs(w[:, None] - codebook[None, :]).argmin(axis=1)
            free = np.flatnonzero(~fixed)
            need = int(round(share * (w.size - pinned.sum()))) - int(fixed.sum() - pinned.sum())
            chosen = free[np.argsort(-np.abs(w[free] - codebook[nearest[free]]), kind="stable")[:max(need, 0)]]
            fixed[chosen], assigned[chosen] = True, nearest[chosen]
            mask.assign(fixed.reshape(mask.shape).astype(np.float32))
            self.assignments[name].assign(assigned.reshape(mask.shape))

    def shared_kernel(self, name):
        codebook = self.codebooks[name]
        values = tf.concat([codebook, tf.zeros([1], codebook.dtype)], 0) if self.keep_zeros else codebook
        return lookup(values, tf.convert_to_tensor(self.assignments[name]))

    def kernel_in_use(self, name):
        """The shared values, or, staged, those of the fixed weights and the free weights' own."""
        if not self.staged:
            return self.shared_kernel(name)
        mask = tf.convert_to_tensor(self.fixed[name])
        return mask * self.shared_kernel(name) + (1.0 - mask) * getattr(self.layer, name)

    def call(self, inputs, training=None):
        kwargs = {"training": training} if self.layer._call_spec.expects_training_arg else {}
        variables = {n: getattr(self.layer, n) for n in self.codebooks}
        in_use = {n: self.kernel_in_use(n) for n in variables}
        for name in variables:  # untracked: the variables stay the layer's
            object.__setattr__(self.layer, name, in_use[name])
        try:
            return self.layer.call(inputs, **kwargs)
        finally:
            for name, variable in variables.items():
                object.__setattr__(self.layer, name, variable)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def unwrap(self):
        """The inner layer with the shared values written into its kernels, trainable again."""
        if self.staged:
            self.fix(1.0)
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


def wrap(layer, k, keep_zeros, symmetric=False, staged=False):
    """``layer`` wrapped in a :class:`SharedKernel` of ``k`` values per trained kernel (``staged``: its
    weights fixed in stages by :meth:`SharedKernel.fix`)."""
    initial = {n: initial_codebook(getattr(layer, n).numpy(), k, keep_zeros, symmetric) for n in kernel_names(layer)}
    return SharedKernel(layer, {n: c for n, (c, _) in initial.items()}, {n: a for n, (_, a) in initial.items()},
                        keep_zeros, staged, name=f"shared_{layer.name}")


def stage_shares(stages):
    """The share of the weights fixed in each of ``stages`` stages: ½, ¾, ⅞ … then all (INQ's halving)."""
    return tuple(1.0 - 0.5 ** (i + 1) for i in range(stages - 1)) + (1.0,)


def fix_all(model, share):
    """:meth:`SharedKernel.fix` ``share`` in every staged wrapper of ``model``."""
    for layer in model.layers:
        if isinstance(layer, SharedKernel) and layer.staged:
            layer.fix(share)


def strip(model):
    """The plain model: every :class:`SharedKernel` replaced by its layer holding the shared values
    (the layers, and so their weights, are those of ``model``, as tfmot's strip functions do)."""
    def unwrap(layer):
        return layer.unwrap() if isinstance(layer, SharedKernel) else layer

    return keras.models.clone_model(model, clone_function=unwrap)
