"""Compression pieces for a Keras user's own training script, as tfmot's ``prune_low_magnitude`` +
``UpdatePruningStep`` + ``strip_pruning`` are: wrap the model, compile and fit it yourself with your
optimizer, loss, data and callbacks, add the piece's callback, then take the plain compressed model.

- :class:`LC` (:mod:`kcompress.keras.lc`): the Learning-Compression algorithm (``compress --method lc``);
  :class:`LCCallback` is what :meth:`LC.callback` returns.
- :class:`Pruner` (:mod:`kcompress.keras.pruner`): pruner masks — gates under the λ/μ rule, then the closed
  units removed for real (``compress --method pruner``); :class:`PrunerCallback` is what :meth:`Pruner.callback`
  returns.
- :class:`AlphaSchedule` (:mod:`kcompress.keras.alpha`): parallel low-rank branches that take over as α falls
  to 0 (``compress --method alpha``); :class:`AlphaScheduleCallback` is what :meth:`AlphaSchedule.callback` returns.

A complete example (a small Dense net, its two kernels sharing one 4-value codebook)::

    import kcompress.keras as kk               # first: it makes TensorFlow's Keras tf-keras (Keras 2)
    import numpy as np
    import tensorflow as tf
    from kcompress.backend import keras        # tf-keras, the Keras kcompress works with

    x = np.random.rand(1000, 20).astype("float32"); y = (x.sum(1) > 10).astype("int64")
    inputs = keras.Input((20,))
    outputs = keras.layers.Dense(2)(keras.layers.Dense(32, activation="relu", name="hidden")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=5, verbose=0)                             # the reference

    lc = kk.LC(model, ["all:quant:k=4"], mu0=1e-3, mu_factor=1.5, mu_steps=8, l_epochs=2)
    lc.model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    lc.model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(64), epochs=lc.epochs(),
                 callbacks=[lc.callback()], verbose=0)
    compressed, stats = lc.finalize()
    print(np.unique(compressed.get_layer("hidden").kernel.numpy()).size, stats["bits_ratio"])   # 4 ...
"""
from kcompress.keras.alpha import AlphaSchedule, AlphaScheduleCallback
from kcompress.keras.lc import LC, LCCallback, model_tasks
from kcompress.keras.pruner import Pruner, PrunerCallback

__all__ = ["AlphaSchedule", "AlphaScheduleCallback", "LC", "LCCallback", "Pruner", "PrunerCallback", "model_tasks"]
