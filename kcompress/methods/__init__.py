"""Compression methods: one module per method, registered here by name.

A method module defines ``NAME``, ``HELP``, ``add_arguments(group)`` for its own flags,
``SWEEPABLE`` (the settings that may be given as comma lists to sweep) and
``run(reference, settings) -> CompressionResult`` (see :mod:`kcompress.methods.base`).
Adding a method is one new module plus one line in ``REGISTRY``.
"""
import importlib

from kcompress.errors import require

REGISTRY = {
    # name: module that implements it
    "lc": "kcompress.methods.lc",
    "pruner": "kcompress.methods.pruner",
    "prune": "kcompress.methods.tfmot_prune",
    "cluster": "kcompress.methods.tfmot_cluster",
    "prune+cluster": "kcompress.methods.tfmot_prune_cluster",
    "alpha": "kcompress.methods.alpha",
}


def method_names():
    return tuple(REGISTRY)


def get_method(name):
    """The module implementing compression method ``name`` (exit 2 if unknown)."""
    require(name in REGISTRY, f"unknown --method {name!r} (one of {', '.join(REGISTRY) or 'none registered'})")
    return importlib.import_module(REGISTRY[name])
