"""What ``train`` builds and on which data: :class:`ModelSettings` (plain Python, no TensorFlow).

The zoo's names and default widths live here so that ``--help`` lists them without building
anything; :mod:`kcompress.core.zoo` builds the models.
"""
from dataclasses import dataclass
from typing import Optional

from kcompress.core.settings import Settings, option
from kcompress.errors import UsageError, require

ZOO_DEFAULT_HIDDEN = {
    "lenet300": (300, 100),
    "lenet5": (120, 84),
    "convnet": (128,),
    "index64": (32,),
}
MODEL_NAMES = tuple(ZOO_DEFAULT_HIDDEN)
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "gelu", "swish", "leaky_relu", "linear")
DATA_HELP = "mnist-sample, mnist, keys:DIST:N, keys-file:PATH or PATH.npz"


def parse_hidden(text):
    """``"300,100"`` -> ``(300, 100)``; ``"none"`` -> ``()`` (no hidden layer). An empty text never gets
    here from a flag or a config: :func:`~kcompress.core.settings.refuse_blank` refuses it first."""
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        return tuple(int(h) for h in text)
    text = str(text).strip()
    if text in ("", "none"):
        return ()
    try:
        widths = tuple(int(t) for t in text.replace("-", ",").split(","))
    except ValueError:
        raise UsageError(f"--hidden {text!r}: expected comma-separated widths like 300,100") from None
    require(all(w > 0 for w in widths), f"--hidden {text!r}: widths must be positive")
    return widths


def default_val_split(spec):
    """0.1 of train for validation, but none for learned-index keys: an index holds every key."""
    return 0.0 if str(spec).startswith("keys") else 0.1


@dataclass(frozen=True)
class ModelSettings(Settings):
    """The zoo model and the dataset of a training run."""

    model: str = option("lenet300", "zoo model", choices=MODEL_NAMES)
    data: str = option("mnist-sample", f"dataset: {DATA_HELP}")
    hidden: Optional[tuple] = option(None, "hidden Dense widths, e.g. 300,100 ('none' for no hidden layer; unset: "
                                           "the model's own)", parse=parse_hidden, sweep=True, metavar="W,W,...")
    activation: str = option("relu", "hidden-layer activation", choices=ACTIVATIONS, sweep=True)
    strict_keys: bool = option(False, "refuse a key file whose keys are unsorted or repeated (default: sort and "
                                      "deduplicate them, with a notice)")
    val_split: Optional[float] = option(None, "share of train held out for validation (unset: 0.1, and 0 for "
                                              "learned-index keys: an index must hold every key)")

    def check(self):
        require(self.val_split is None or 0 <= self.val_split < 1, f"--val-split must be in [0, 1), got {self.val_split}")

    def resolved(self):
        """The values unset fields take in a run, for ``run.json``: the zoo model's own hidden widths (the
        validation share is recorded resolved in the settings themselves)."""
        return {"hidden": list(ZOO_DEFAULT_HIDDEN[self.model])} if self.hidden is None else {}

    @property
    def split(self):
        """The validation share actually used."""
        return default_val_split(self.data) if self.val_split is None else self.val_split
