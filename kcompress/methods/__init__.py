"""Compression methods: one folder per method, registered here by name.

``REGISTRY`` maps a method's name to its settings class (``module:Class``); the class names the
module whose ``run`` does the work (``RUNNER``). Settings modules import no TensorFlow, so the
command line lists every method and its flags at once; a method's own module (and tfmot) is
imported only when that method runs. Adding a method is one folder, one settings dataclass and
one line here (see CONTRIBUTING.md).
"""
import importlib

from kcompress.errors import require

REGISTRY = {
    "prune": "kcompress.methods.tfmot.settings:PruneSettings",
    "cluster": "kcompress.methods.tfmot.settings:ClusterSettings",
    "prune+cluster": "kcompress.methods.tfmot.settings:PruneClusterSettings",
    "lc": "kcompress.methods.lc.settings:LCSettings",
    "pruner": "kcompress.methods.pruner.settings:PrunerSettings",
    "alpha": "kcompress.methods.alpha.settings:AlphaSettings",
    "qat": "kcompress.methods.qat.settings:QATSettings",
}


def settings_class(name):
    """The settings dataclass of method ``name`` (exit 2 if unknown)."""
    require(name in REGISTRY, f"unknown --method {name!r} (one of {', '.join(REGISTRY)})")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def get_method(name):
    """The module implementing method ``name``: its ``run(reference, settings)``."""
    return importlib.import_module(settings_class(name).RUNNER)
