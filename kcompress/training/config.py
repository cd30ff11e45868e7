"""How a model is trained: :class:`TrainConfig`, the settings of the shared training loop.

Reference training, fine-tuning after compression, LC L-steps, α steps, pruner gates and tuning
trials all train through :func:`kcompress.training.loop.fit` with one of these; every field
lands in ``run.json``. It is a typed settings dataclass (:mod:`kcompress.core.settings`): the
``train`` flags and their help are generated from it.
"""
import math
from dataclasses import dataclass

from kcompress.core.settings import Settings, option, positive
from kcompress.core.tasks import LOSS_REDUCTIONS, LOSSES
from kcompress.errors import require

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("fixed", "step", "plateau")
# What an epoch's logs hold (kcompress.core.objectives: the loss, accuracy and error % of a classifier, ε and
# mae of a regression), on the validation split or the training one; Keras only warns, epoch after epoch,
# when early stopping or a plateau schedule watches a name the logs lack, and never stops or decays.
MONITORS = tuple(f"{split}{name}" for split in ("val_", "")
                 for name in ("loss", "error", "accuracy", "max_error", "mae"))


def batch_size(value):
    """``--batch-size``: a positive integer, or ``full`` for full-batch training."""
    if str(value) == "full":
        return "full"
    require(str(value).isdigit() and int(value) > 0, f"--batch-size must be a positive integer or 'full', got {value}")
    return int(value)


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Everything that decides how a model is trained (all of it lands in run.json)."""

    epochs: int = option(30, "epochs of training", sweep=True)
    batch_size: object = option(64, "mini-batch size, or 'full' for full-batch", parse=batch_size, sweep=True)
    optimizer: str = option("sgd", "optimizer", choices=OPTIMIZERS, sweep=True)
    lr: float = option(0.05, "(initial) learning rate", sweep=True)
    momentum: float = option(0.9, "SGD momentum", sweep=True)
    nesterov: bool = option(True, "Nesterov momentum (--no-nesterov: plain momentum)", sweep=True)
    lr_schedule: str = option("fixed", "fixed; step: ×gamma every step-size epochs; plateau: ×gamma when the "
                                       "monitored value stalls", choices=LR_SCHEDULES, sweep=True)
    gamma: float = option(0.1, "learning-rate factor of step and plateau schedules", sweep=True)
    step_size: int = option(10, "epochs between step decays", sweep=True)
    plateau_patience: int = option(5, "epochs without improvement before a plateau decay", sweep=True)
    patience: int = option(0, "early-stopping patience in epochs (0 = off)", sweep=True)
    monitor: str = option("val_loss", "what early stopping and plateau decay watch", choices=MONITORS)
    loss: str = option(None, "loss (unset: xent for classes, mse for regression); xent follows the output "
                             "(logits, softmax or one sigmoid unit); lse = log-sum-exp of |errors|, targets ε", choices=LOSSES, sweep=True)
    lse_temperature: float = option(1e-3, "temperature of the lse loss (in target units)", sweep=True)
    loss_reduction: str = option("mean", "how an mse/mae regression loss combines a model's outputs: mean (the "
                                         "average over outputs, Keras's), sum, or per-output (one loss term per "
                                         "output, trained on their sum and logged as loss_out0, loss_out1, ...)",
                                 choices=LOSS_REDUCTIONS, sweep=True)
    curve_every: int = option(0, "also record the loss and metric, train (over the last N steps) and validation, "
                                 "every N optimizer steps into steps.csv and steps.png (0: per epoch only); trains "
                                 "one step per call, and each record costs one evaluation of the validation split")
    verbose: int = option(None, "Keras verbosity; unset: a progress bar on a terminal, a line per epoch otherwise",
                          cli=False)

    def check(self):
        require(int(self.epochs) > 0, f"--epochs must be positive, got {self.epochs}")
        require(float(self.lr) > 0 and math.isfinite(float(self.lr)), f"--lr must be positive, got {self.lr}")
        batch_size(self.batch_size)
        require(0 <= float(self.momentum) < 1, f"--momentum must be in [0, 1), got {self.momentum}")
        require(0 < float(self.gamma) <= 1, f"--gamma must be in (0, 1], got {self.gamma}")
        positive(self.step_size, "--step-size")
        positive(self.plateau_patience, "--plateau-patience")
        require(int(self.patience) >= 0, f"--patience must be >= 0, got {self.patience}")
        positive(self.lse_temperature, "--lse-temperature")
        require(self.loss_reduction == "mean" or self.loss in (None, "mse", "mae"),
                f"--loss-reduction {self.loss_reduction} needs --loss mse or mae, not {self.loss}")
        require(int(self.curve_every) >= 0, f"--curve-every must be >= 0, got {self.curve_every}")

    def batch_for(self, n):
        return n if self.batch_size == "full" else int(self.batch_size)
