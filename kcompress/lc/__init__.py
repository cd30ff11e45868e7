"""The Learning-Compression (LC) algorithm: compression as constrained optimisation.

- :mod:`~kcompress.lc.base`, :mod:`~kcompress.lc.pruning`, :mod:`~kcompress.lc.quantization`,
  :mod:`~kcompress.lc.lowrank`, :mod:`~kcompress.lc.additive`: the compression types, plain
  numpy objects whose ``compress(x, mu)`` is the C-step (they know nothing of Keras);
- :mod:`~kcompress.lc.tasks`: task strings / YAML files mapping layers to compressions;
- :mod:`~kcompress.lc.algorithm`: the LC loop (DC baseline, L-steps, C-steps, multipliers);
- :mod:`~kcompress.lc.factorize`: the final model with low-rank layers split in two;
- :mod:`~kcompress.lc.report`: the μ-step plot and tables.

The command-line method is :mod:`kcompress.methods.lc`.
"""
