"""The Learning-Compression (LC) algorithm: compression as constrained optimisation.

- :mod:`~kcompress.methods.lc.types.base`, :mod:`~kcompress.methods.lc.types.pruning`, :mod:`~kcompress.methods.lc.types.quantization`,
  :mod:`~kcompress.methods.lc.types.lowrank`, :mod:`~kcompress.methods.lc.types.additive`: the compression types, plain
  numpy objects whose ``compress(x, mu)`` is the C-step (they know nothing of Keras);
- :mod:`~kcompress.methods.lc.tasks`: task strings / YAML files mapping layers to compressions;
- :mod:`~kcompress.methods.lc.algorithm`: the LC loop (DC baseline, L-steps, C-steps, multipliers);
- :mod:`~kcompress.methods.lc.factorize`: the final model with low-rank layers split in two;
- :mod:`~kcompress.methods.lc.plots`: the μ-step plot and tables.

The command-line method is :mod:`kcompress.methods.lc.method`.
"""
