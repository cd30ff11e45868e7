"""Settings of ``--method alpha`` (the α-schedule) and the α values they define.

The default schedule is note 002's reading of "an exponential schedule with a decay rate of 0.05":
α = e^(−0.05k), whose values 0.951, 0.607, 0.449 (k = 1, 10, 16) are the note's legend (0.95, 0.6,
0.45); ``geometric`` is α = (1 − decay)^k, which never gives 0.6 or 0.45 (0.95^15 = 0.463, 0.95^16 =
0.440), and was ``exp`` before 2026-12-03. The optimizer defaults to Adam at 1e-3 (SGD with momentum at
the reference's 0.05 diverged right after α resets), with a plateau schedule whose patience is
``--alpha-patience``; an α ends after ``--epochs-per-alpha`` epochs or, by default, once the learning rate
has been cut ``--alpha-lr-drops`` times: that plateau-based end keeps the default schedule (59 α values
and 0) practical without early stopping, which cut training short in the original experiments. Note
002's own run is ``--alpha-lr-drops 0`` with every other default (:data:`NOTE_002_RECIPE`).
"""
import math
from dataclasses import dataclass
from typing import Optional

from kcompress.core.settings import float_list, option
from kcompress.errors import require
from kcompress.methods.base import FinetuneSettings

# α at step k of each rule with rate ``d``
STEPS = {"exp": lambda d, k: math.exp(-d * k), "geometric": lambda d, k: (1 - d) ** k,
         "linear": lambda d, k: round(1 - k * d, 12)}
SCHEDULES = (*STEPS, "list")
# note 002: exp at 0.05, no early stop, up to 350 epochs per α, lr reset to 1e-3 per α and cut on plateau
NOTE_002_RECIPE = ("--alpha-schedule exp --alpha-decay 0.05 --epochs-per-alpha 350 --alpha-lr-drops 0 --lr 1e-3 "
                   "--lr-schedule plateau --patience 0")
MAX_ALPHAS = 1000  # α steps of one schedule: more is a typo in --alpha-decay, not a run anyone waits for
TARGETS = ("labels", "teacher")
CONV_BRANCHES = ("pooled", "full")
BLEND_AT = ("preactivation", "output")


def alpha_schedule(kind="exp", decay=0.05, alpha_min=0.05, values=None):
    """The α values trained after α = 1 (which needs no training), ending with 0."""
    require(kind in SCHEDULES, f"unknown --alpha-schedule {kind!r} (one of {', '.join(SCHEDULES)})")
    if kind == "list":
        require(values, "--alpha-schedule list needs --alpha-list, e.g. 0.8,0.5,0.2,0")
        alphas = list(float_list("--alpha-list")(values))
        require(all(0 <= a < 1 for a in alphas), f"--alpha-list values must be in [0, 1), got {alphas}")
        require(all(a > b for a, b in zip(alphas, alphas[1:])), f"--alpha-list must be strictly decreasing, got {alphas}")
        return alphas if alphas[-1] == 0 else alphas + [0.0]
    require(0 < decay < 1, f"--alpha-decay must be in (0, 1), got {decay}")
    require(0 < alpha_min < 1, f"--alpha-min must be in (0, 1), got {alpha_min}")
    alphas, k = [], 1
    while True:
        a = STEPS[kind](decay, k)
        if a < alpha_min:
            return alphas + [0.0]
        alphas.append(a)
        k += 1
        require(k <= MAX_ALPHAS, f"--alpha-decay {decay} with --alpha-min {alpha_min} gives more than {MAX_ALPHAS} "
                                 "α values (note 002's schedule has 59): raise --alpha-decay or --alpha-min")


@dataclass(frozen=True)
class AlphaSettings(FinetuneSettings):
    """Branches with ``prune`` fewer parameters blended in as α falls from 1 to 0 (see the module)."""

    NAME, RUNNER = "alpha", "kcompress.methods.alpha.method"
    HELP = "α-schedule: parallel narrower branches (rank-r bottlenecks) take over from the original layers"
    BUDGET = "epochs_per_alpha"
    RECIPE, RECIPE_GAIN = {"prune": 0.7, "alpha_decay": 0.2}, 2.0  # prune 0.57: 2.32x (bench/results/auto_defaults.md)
    SEARCH = {"prune": "0.5:0.9", "alpha_decay": (0.1, 0.2)}  # the faster schedules: 2.3-2.9x faster, minutes
    REDUCES = ("bits", "gzip-tflite", "deployed-size", "params", "latency")

    prune: float = option(0.65, "share of each layer's parameters the branch drops, in (0, 1)", sweep=True)
    alpha_schedule: str = option("exp", "how α falls from 1 to 0 at step k: exp α = e^(−decay·k) (note 002's "
                                        "reading: 0.951, 0.607, 0.449 at k = 1, 10, 16), geometric α = (1−decay)^k, "
                                        "linear α = 1 − decay·k, or --alpha-list", choices=SCHEDULES, sweep=True)
    alpha_decay: float = option(0.05, "rate (exp, geometric) or step (linear) of the α schedule", sweep=True)
    alpha_min: float = option(0.05, "below this α jumps to 0", sweep=True)
    alpha_list: Optional[tuple] = option(None, "decreasing α values for --alpha-schedule list, e.g. 0.8,0.5,0.2 (0 is "
                                               "appended; unset: another --alpha-schedule)",
                                         parse=float_list("--alpha-list"))
    epochs_per_alpha: int = option(350, "most epochs at each α > 0", sweep=True)
    alpha_patience: int = option(2, "epochs without validation-loss improvement before the learning rate is cut "
                                    "by gamma", sweep=True)
    alpha_lr_drops: int = option(2, "move to the next α once the learning rate has been cut this often; "
                                    "0 = train --epochs-per-alpha (note 002's run: " + NOTE_002_RECIPE + ", i.e. "
                                    "the defaults with --alpha-lr-drops 0)", sweep=True)
    target: str = option("labels", "labels (task loss) or teacher (mean squared error per output to the original "
                                   "model's outputs)", choices=TARGETS, sweep=True)
    blend_at: str = option("preactivation", "mix the two paths before the layer's activation "
                                            "(act(α·Wx + (1−α)·branch)) or after it", choices=BLEND_AT, sweep=True)
    conv_branch: str = option("pooled", "pooled: a conv followed by a 2×2 max-pool gets its branch at stride 2, "
                                        "upsampled while blending (pool and upsampling cancel and are dropped at "
                                        "α = 0: a quarter of the work); full: at the conv's stride",
                              choices=CONV_BRANCHES, sweep=True)
    freeze_original: bool = option(True, "keep the pretrained weights fixed and train only the branches and "
                                         "batch-norm, whose statistics must follow the blended activations "
                                         "(--no-freeze-original: train them too)", sweep=True)
    epochs: Optional[int] = option(None, "epochs of the last step, α = 0 (unset: --epochs-per-alpha)", sweep=True)
    optimizer: str = option("adam", "optimizer of every α step", choices=("sgd", "adam"), sweep=True)
    lr: float = option(1e-3, "learning rate at the start of every α step", sweep=True)
    lr_schedule: str = option("plateau", "learning-rate schedule within an α step", choices=("fixed", "step", "plateau"),
                              sweep=True)

    def check(self):
        super().check()
        require(0 < self.prune < 1, f"--prune must be in (0, 1), got {self.prune}")
        for flag, value, least in (("--epochs-per-alpha", self.epochs_per_alpha, 1),
                                   ("--alpha-patience", self.alpha_patience, 1),
                                   ("--alpha-lr-drops", self.alpha_lr_drops, 0)):
            require(value >= least, f"{flag} must be an integer >= {least}, got {value}")
        if self.alpha_list is not None:  # checked even where another --alpha-schedule leaves it unused
            alpha_schedule("list", values=self.alpha_list)
        self.alphas()

    def alphas(self):
        """The α values of the schedule after α = 1, ending with 0."""
        return alpha_schedule(self.alpha_schedule, self.alpha_decay, self.alpha_min, self.alpha_list)

    def epochs_at(self, alpha):
        """The most epochs trained at ``alpha``: ``--epochs`` at α = 0 where set, else ``--epochs-per-alpha``."""
        return self.epochs if alpha == 0 and self.epochs is not None else self.epochs_per_alpha

    def total_epochs(self):
        """The most epochs of the whole schedule (every α ending by its epoch count)."""
        return sum(self.epochs_at(a) for a in self.alphas())
