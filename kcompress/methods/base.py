"""What every compression method shares: its settings' base, its input, its result, its protocol.

A method is a folder ``methods/<method>/`` with a ``settings.py`` (a frozen dataclass derived
from :class:`MethodSettings` or :class:`FinetuneSettings`: defaults, validation, sweep axes; no
TensorFlow, so ``--help`` stays instant) and a module whose ``run(reference, settings)`` follows
:class:`Method`: it receives a :class:`Reference` — the trained model, its ``run.json``, its
dataset and training configuration — and returns a :class:`CompressionResult` holding a *plain*
Keras model (no wrappers) that the pipeline evaluates, measures, saves and plots. A method knows
nothing of files, flags or sweeps.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Optional, Protocol

from kcompress.core.data import Dataset
from kcompress.core.record import TFLITE_KEYS, RunRecord
from kcompress.core.settings import Settings, option, positive
from kcompress.core.stats import weights_digest
from kcompress.errors import require
from kcompress.training.config import LR_SCHEDULES, OPTIMIZERS, TrainConfig, batch_size

REFERENCE = "the reference's"


@dataclass(frozen=True)
class MethodSettings(Settings):
    """Settings every method takes: which layers, and how its training steps run.

    ``None`` in the optimizer fields means: as the reference was trained (its ``run.json``)."""

    NAME: ClassVar[str] = ""
    HELP: ClassVar[str] = ""
    RUNNER: ClassVar[str] = ""  # module path of the method's ``run``
    BUDGET: ClassVar[Optional[str]] = None  # the field Hyperband scales (epochs of some kind)
    # compress --method auto: the searched fields (field -> a tuple of candidates, or a range
    # "LOW:HIGH[:log]"), the objectives the method can lower, the methods that may follow it
    SEARCH: ClassVar[dict] = {}
    REDUCES: ClassVar[tuple] = ("bits", "gzip-tflite", "deployed-size")
    THEN: ClassVar[tuple] = ()
    # the auto search's first trials: a known-good value of each searched field, and the bits ratio it
    # reached on LeNet-300-100 within +0.5 pp (bench/results/), which orders the recipes (a chain: the product)
    RECIPE: ClassVar[dict] = {}
    RECIPE_GAIN: ClassVar[float] = 1.0

    layers: Optional[str] = option(None, "comma-separated layer names to compress (unset: the method's choice)")
    batch_size: Optional[object] = option(None, f"mini-batch size or 'full' (unset: {REFERENCE})", parse=batch_size,
                                          sweep=True)
    optimizer: Optional[str] = option(None, f"optimizer (unset: {REFERENCE})", choices=OPTIMIZERS, sweep=True)
    lr: Optional[float] = option(None, f"learning rate (unset: {REFERENCE})", sweep=True)
    momentum: Optional[float] = option(None, f"SGD momentum (unset: {REFERENCE})", sweep=True)
    curve_every: Optional[int] = option(None, "learning curve every N optimizer steps, in steps.csv and steps.png "
                                              f"(0: per epoch only; unset: {REFERENCE})")

    def check(self):
        positive(self.lr, "--lr")
        positive(self.curve_every, "--curve-every", allow_zero=True)
        require(self.momentum is None or 0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}")

    def train_overrides(self):
        """The :class:`TrainConfig` fields this method sets (None = keep the reference's)."""
        names = set(TrainConfig.names()) - {"verbose"}
        return {k: v for k, v in self.to_dict().items() if k in names and v is not None}


@dataclass(frozen=True)
class FinetuneSettings(MethodSettings):
    """A method that fine-tunes for a number of epochs with a learning-rate schedule."""

    BUDGET: ClassVar[Optional[str]] = "epochs"
    MIN_EPOCHS: ClassVar[int] = 1  # 0 where the fine-tuning is optional (the pruner's)

    epochs: int = option(10, "fine-tuning epochs", sweep=True)
    lr_schedule: str = option("fixed", "fine-tuning learning-rate schedule (see train --help)", choices=LR_SCHEDULES,
                              sweep=True)
    gamma: float = option(0.1, "learning-rate factor of the step and plateau schedules", sweep=True)
    step_size: int = option(10, "epochs between step decays", sweep=True)
    patience: int = option(0, "early-stopping patience in epochs (0 = off)", sweep=True)

    def check(self):
        super().check()
        require(self.epochs is None or self.epochs >= self.MIN_EPOCHS,
                f"--epochs must be >= {self.MIN_EPOCHS}, got {self.epochs}")
        require(0 < self.gamma <= 1, f"--gamma must be in (0, 1], got {self.gamma}")
        positive(self.step_size, "--step-size")
        require(self.patience >= 0, f"--patience must be >= 0, got {self.patience}")


@dataclass
class Reference:
    """The trained model a method compresses, with everything known about how it was made."""

    model: object
    run: RunRecord
    data: Dataset
    train: TrainConfig
    folder: Optional[Path] = None
    data_spec: dict = field(default_factory=dict)  # how to load ``data`` again (see kcompress.pipeline)
    _tflite_size: Optional[dict] = field(default=None, repr=False)

    def from_args(self):
        """The ``--from`` flags that load this reference again: a bare model file also needs its
        ``--data`` (and the ``--loss``/``--metric`` given for it)."""
        args = ["--from", str(self.folder.resolve()) if self.folder else "MODEL"]
        if self.run.kind == "import" and self.run.created is None:  # a bare model, not a directory
            args += ["--data", self.data_spec.get("data")]
            args += [f for key in ("loss", "metric") if self.run.objective_of(f"{key}_from") == f"--{key}"
                     for f in (f"--{key}", self.run.objective_of(key))]
        return args

    def tflite_size(self):
        """The reference's float32 TFLite sizes: from its ``run.json`` (``train`` and ``compress``
        record them with the digest of the weights they were measured on), else converted once —
        every setting of a sweep and every tuner trial compares with them. Converting
        LeNet-300-100 costs ~0.8 s, once per command without a record that still holds."""
        if self._tflite_size is None:
            recorded = self.run.tflite_sizes
            if recorded.get("weights_sha1") != weights_digest(self.model.get_weights()):
                from kcompress.deploy.convert import tflite_size  # settings modules import this one TensorFlow-free

                recorded = tflite_size(self.model)
            self._tflite_size = {k: recorded[k] for k in TFLITE_KEYS}
        return self._tflite_size


@dataclass
class CompressionResult:
    """A method's output: a plain Keras model plus what it wants recorded and drawn; ``resolved``
    holds the values its unset settings took (see :func:`unset_values`); ``files`` (name → bytes) are
    written into the model directory beside the model (QAT's int8 TFLite file)."""

    model: object
    record: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    plots: Optional[Callable[[Path], None]] = None
    resolved: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)


class Method(Protocol):
    """A method module: ``run`` compresses a copy of the reference (``reference.model`` may be
    changed in place) with validated ``settings`` of the method's settings class."""

    def run(self, reference: Reference, settings: MethodSettings) -> CompressionResult: ...


def finetune_config(reference, settings, **method_choices):
    """The training config of a method's training steps: the reference's loss and batch size,
    no schedule or early stopping, then ``method_choices`` (what the method's algorithm needs,
    e.g. the α-schedule's plateau patience), then the settings the method declares."""
    base = {**reference.train.to_dict(), "lr_schedule": "fixed", "patience": 0, **method_choices}
    base.update(settings.train_overrides())
    return TrainConfig.from_dict(base)


def unset_values(settings, used):
    """``{name: value}`` for each field left unset in ``settings`` that ``used`` (a mapping of what the run
    trained with, e.g. its training config's ``to_dict()``) holds: ``run.json`` records them beside the None."""
    return {k: used[k] for k, v in settings.to_dict().items() if v is None and k in used}


def target_layers(model, names=None, kinds=("Dense", "Conv2D")):
    """The layers to compress: those named in ``names`` (comma string or list), else every
    layer of one of ``kinds`` that has a kernel. Unknown names are a usage error."""
    if names:
        wanted = names.split(",") if isinstance(names, str) else list(names)
        known = {l.name: l for l in model.layers}
        unknown = [n for n in wanted if n not in known]
        require(not unknown, f"--layers: no layer named {', '.join(unknown)} (model has {', '.join(known)})")
        return [known[n] for n in wanted]
    return [l for l in model.layers if type(l).__name__ in kinds and kernel_names(l)]


# Every layer whose kernels the weight-level methods (tfmot, LC) compress; biases and
# batch-norm parameters are left alone, as tfmot leaves them.
KERNEL_KINDS = ("Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D")
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def kernel_names(layer):
    """The names of ``layer``'s kernel variables, in the order of its weights: a separable
    convolution has two (depthwise, pointwise), a depthwise one only ``depthwise_kernel``."""
    return [n for n in KERNEL_NAMES if getattr(layer, n, None) is not None]
