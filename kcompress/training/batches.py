"""The training split as fit's input: tensors converted once, batches reshuffled every epoch.

Given numpy arrays, ``fit`` copies them into tensors and builds an input pipeline on every call, and
LC calls ``fit`` once per μ step. :func:`training_input` keeps the tensors of the last few splits and,
per batch size, one pipeline whose shuffling seed is a variable set at every call (under a distribution
strategy each call builds its own). The batches are those ``fit`` makes from arrays: the whole split
reshuffled every epoch, the last batch partial, each batch gathered at once. The pipeline runs without
tf.data's autotuning, whose thread made every other ``fit`` wait at its end. The measurements behind
these choices: bench/results/README.md, "Training input".
"""
from collections import OrderedDict

import numpy as np

from kcompress.backend import tf

KEEP = 2  # splits kept as tensors
_tensors = OrderedDict()


def training_input(data, batch_size):
    """``fit``'s ``x``/``steps_per_epoch`` arguments for the training split of ``data``.

    The epochs' orders are seeded from numpy's generator (which
    :func:`kcompress.backend.set_seed` seeds): a fit after the same ``set_seed`` sees the same
    batches, consecutive fits (LC's μ steps) see new orders. A distribution strategy splits
    each batch over its replicas (or shards the batches over workers) as it does a dataset."""
    seed = int(np.random.randint(2 ** 31 - 1))
    entry = _cached(data.x_train, data.y_train)
    n, batch_size = int(entry.x.shape[0]), int(batch_size)
    if tf.distribute.has_strategy():  # a pipeline of its own, its seed a constant
        dataset = _pipeline(entry.x, entry.y, batch_size, tf.constant(seed, tf.int64))
    else:
        if batch_size not in entry.pipelines:
            with tf.init_scope():
                variable = tf.Variable(0, dtype=tf.int64, trainable=False)
            entry.pipelines[batch_size] = (_pipeline(entry.x, entry.y, batch_size, variable), variable)
        dataset, variable = entry.pipelines[batch_size]
        variable.assign(seed)
    return {"x": dataset, "steps_per_epoch": -(-n // batch_size)}


def _pipeline(x, y, batch_size, seed):
    """Endless batches of ``(x, y)``: epoch e in the order of ``stateless_shuffle`` seeded
    ``(seed, e)``, read when the epoch starts (a variable ``seed`` is read by each new iterator)."""
    n = int(x.shape[0])
    full = n // batch_size

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64),
                                                         tf.stack([tf.convert_to_tensor(seed), epoch]))
        batches = tf.data.Dataset.from_tensor_slices(tf.reshape(order[:full * batch_size], [full, batch_size]))
        return batches.concatenate(tf.data.Dataset.from_tensors(order[full * batch_size:])) if n % batch_size else batches

    def gather(indices, arrays):
        return tuple(tf.gather(a, indices) for a in arrays)

    orders = tf.data.Dataset.range(2 ** 62).flat_map(epoch_batches)  # endless: fit counts the steps
    arrays = tf.data.Dataset.from_tensors((x, y)).repeat()
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False  # no copy of the arrays' graph
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.autotune.enabled = False  # see the module's docstring
    return tf.data.Dataset.zip((orders, arrays)).map(gather).with_options(options).prefetch(2)


class _Entry:
    """A training split as tensors, and its pipelines by batch size."""

    def __init__(self, x, y):
        self.arrays = (x, y)  # held, so that their ids cannot be reused while cached
        self.x, self.y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        self.pipelines = {}


def _cached(x, y):
    """The :class:`_Entry` of ``x`` and ``y``, converted once. Keyed by the arrays themselves: a
    Dataset copied with other targets (e.g. teacher logits) gets its own entry."""
    key = (id(x), id(y))
    if key not in _tensors:
        with tf.init_scope():
            _tensors[key] = _Entry(x, y)
        while len(_tensors) > KEEP:
            _tensors.popitem(last=False)
    _tensors.move_to_end(key)
    return _tensors[key]
