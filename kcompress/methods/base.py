"""What every compression method shares: its input (the reference) and its result.

``run(reference, settings)`` of a method module receives a :class:`Reference` — the trained
model, its ``run.json``, its dataset and training configuration — and the settings from
the command line or Python, and returns a :class:`CompressionResult` holding a *plain*
Keras model (no wrappers) that ``compress`` evaluates, measures, saves and plots.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from kcompress.data import Dataset
from kcompress.training import TrainConfig

# Fine-tuning flags shared by all methods (defined once in the CLI); None = method default.
FINETUNE_KEYS = ("epochs", "lr", "optimizer", "batch_size", "momentum", "lr_schedule", "patience")


@dataclass
class Reference:
    """The trained model a method compresses, with everything known about how it was made."""

    model: object
    run: dict
    data: Dataset
    train: TrainConfig
    folder: Optional[Path] = None
    _tflite_size: Optional[dict] = field(default=None, repr=False)

    def tflite_size(self):
        """The reference's float32 TFLite sizes, converted once: every setting of a sweep
        (and every tuner trial) compares with them."""
        if self._tflite_size is None:
            from kcompress.convert import tflite_size

            self._tflite_size = tflite_size(self.model)
        return self._tflite_size


@dataclass
class CompressionResult:
    """A method's output: a plain Keras model plus what it wants recorded and drawn."""

    model: object
    record: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    plots: Optional[Callable[[Path], None]] = None


def finetune_config(reference, settings, **method_defaults):
    """The training config for fine-tuning: reference's loss and batch size, the method's
    defaults, then whatever the user set explicitly (``settings`` values that are not None)."""
    base = reference.train.to_dict()
    base.update({"lr_schedule": "fixed", "patience": 0, **method_defaults})
    base.update({k: settings[k] for k in FINETUNE_KEYS if settings.get(k) is not None})
    return TrainConfig.from_dict(base).validate()


def target_layers(model, names=None, kinds=("Dense", "Conv2D")):
    """The layers to compress: those named in ``names`` (comma string or list), else every
    layer of one of ``kinds`` that has a kernel. Unknown names are a usage error."""
    from kcompress.errors import require

    if names:
        wanted = names.split(",") if isinstance(names, str) else list(names)
        known = {l.name: l for l in model.layers}
        unknown = [n for n in wanted if n not in known]
        require(not unknown, f"--layers: no layer named {', '.join(unknown)} (model has {', '.join(known)})")
        return [known[n] for n in wanted]
    return [l for l in model.layers if type(l).__name__ in kinds and hasattr(l, "kernel")]
