"""The training split as fit's input: tensors converted once, batches reshuffled every epoch.

Given numpy arrays, ``fit`` copies them into tensors and builds an input pipeline on every call.
LC calls ``fit`` once per μ step: on LeNet-300-100 and the 5k MNIST sample that cost 61 ms per
call, 2.4 s of a 30 s LC run (40 steps, profiled, issue 13). :func:`training_input` keeps the
tensors of the last few splits and builds the (small) pipeline over them per call: the same
batches as ``fit`` makes from arrays — the whole split reshuffled every epoch, the last batch
partial, each batch gathered at once as Keras's own adapter does (a ``Dataset.shuffle`` of
single examples cost 1.3x per epoch).

The pipeline runs without tf.data's autotuning, one gather at a time, two batches ahead: with
autotuning, every other ``fit`` waited ~0.25 s at its end for the tuner's thread (5 epochs of an
LC L-step on LeNet-300-100, batch 256: 0.36 or 0.64 s per call, median 0.66 s over 10 calls;
without it 0.32-0.39 s), and the per-epoch cost of ``bench/epoch_cost.py`` stayed the same
(82 ms at batch 64, 58 ms at batch 256, against torch's 89 and 59 ms in the same run).
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
    x, y = _cached(data.x_train, data.y_train)
    n, batch_size = int(x.shape[0]), int(batch_size)
    full = n // batch_size

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), tf.stack([seed, epoch]))
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
    dataset = tf.data.Dataset.zip((orders, arrays)).map(gather)
    return {"x": dataset.with_options(options).prefetch(2), "steps_per_epoch": -(-n // batch_size)}


def _cached(x, y):
    """``x`` and ``y`` as tensors, converted once. Keyed by the arrays themselves (held in the
    entry, so that their ids cannot be reused while cached): a Dataset copied with other targets
    (e.g. teacher logits) gets its own entry."""
    key = (id(x), id(y))
    if key not in _tensors:
        with tf.init_scope():
            _tensors[key] = (x, y, tf.convert_to_tensor(x), tf.convert_to_tensor(y))
        while len(_tensors) > KEEP:
            _tensors.popitem(last=False)
    _tensors.move_to_end(key)
    return _tensors[key][2:]
