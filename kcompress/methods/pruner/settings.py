"""Settings of ``--method pruner`` (pruner masks): which units to keep, the losses, the λ/μ
schedule and how the gates learn. The fine-tuning fields (``--epochs``, ``--lr``, ...) set the
gate phase's network optimizer (its learning rate follows ``--gate-lr-schedule``) and the
fine-tuning after the units are removed (``--epochs``, ``--lr-schedule``); ``--gamma`` and
``--step-size`` serve both schedules."""
import math
from dataclasses import dataclass
from typing import Optional

from kcompress.core.settings import option, positive
from kcompress.errors import require
from kcompress.methods.base import FinetuneSettings

REJECTIONS = ("sum", "product")
MU_RULES = ("adaptive", "balanced")
SIZE_COEFFICIENTS = ("none", "units")
LAMBDA_RULES = ("schedule", "stall", "slope")
GATE_LR_SCHEDULES = ("fixed", "step", "plateau", "on-pruning")


def parse_keep_units(text):
    """``"dense_1=105,dense_2=35"`` -> ``(("dense_1", 105), ("dense_2", 35))``."""
    if isinstance(text, (tuple, list)):
        return tuple((str(n), int(k)) for n, k in text)
    out = []
    for item in str(text).split(","):
        name, _, n = item.partition("=")
        require(name.strip() and n.strip().lstrip("-").isdigit(),
                f"--keep-units {text!r}: expected LAYER=n,... e.g. dense_1=105")
        out.append((name.strip(), int(n)))
    return tuple(out)


def parse_mu(value):
    """``--mu``: one of :data:`MU_RULES` or a positive number."""
    if str(value) in MU_RULES:
        return str(value)
    try:
        return float(value)
    except ValueError:
        require(False, f"--mu {value!r}: expected {' or '.join(MU_RULES)} or a number")


@dataclass(frozen=True)
class PrunerSettings(FinetuneSettings):
    """A gate σ(w) per unit trained on L_task + μ·λ·(L_sel + L_rej), λ raised on a schedule;
    the units whose gates close are removed and the smaller model is fine-tuned."""

    NAME, RUNNER = "pruner", "kcompress.methods.pruner.method"
    HELP = "pruner masks: learn a gate per unit, keep n per layer, remove the rest for real"
    BUDGET = "max_epochs"
    MIN_EPOCHS = 0  # --epochs 0: no fine-tuning after the units are removed
    # keep 0.35: 3.1x fewer parameters, 2.35x faster in onnxruntime at +0.40 pp (LeNet-300-100); the
    # smaller model is then a natural start for LC, which compresses what is left
    SEARCH = {"keep": "0.15:0.6"}
    RECIPE, RECIPE_GAIN = {"keep": 0.35}, 3.05
    REDUCES = ("bits", "gzip-tflite", "deployed-size", "params", "latency")
    THEN = ("lc",)

    keep: float = option(0.35, "share of units kept in each gated layer, in (0, 1]", sweep=True)
    keep_units: Optional[tuple] = option(None, "exact units to keep per layer, e.g. dense_1=105,dense_2=35 (these "
                                               "layers are gated; with --layers, the others use --keep; unset: --keep "
                                               "everywhere)", parse=parse_keep_units, metavar="LAYER=n,...")
    rejection: str = option("sum", "L_rej: sum Σσ(1−σ)/N, or product [Σσ(1−σ) + N·Πσ]/N (note 003; adds Πσ)",
                            choices=REJECTIONS, sweep=True)
    lambda_start: float = option(1.0, "first λ", sweep=True)
    lambda_factor: float = option(10.0, "λ multiplier at each raise", sweep=True)
    lambda_every: int = option(20, "epochs between λ raises", sweep=True)
    lambda_max: float = option(1e7, "largest λ", sweep=True)
    mu: object = option("adaptive", "adaptive: μ = ⟨L_task⟩/⟨L_pru⟩ over the last --mu-window epochs, so "
                                    "μ·λ·L_pru ≈ λ·⟨L_task⟩ and λ sets the pressure; balanced (note 003): "
                                    "μ = ⟨L_task⟩/(λ·⟨L_pru⟩), so μ·λ = ⟨L_task⟩/⟨L_pru⟩ whatever λ is: λ's schedule "
                                    "cancels (μ falls by the λ factor at each raise); or a fixed coefficient",
                        parse=parse_mu, metavar="{adaptive,balanced,NUMBER}", sweep=True)
    mu_window: int = option(10, "epochs averaged by an adaptive or balanced --mu (as in note 003)")
    size_coefficient: str = option("none", "coefficient c on L_pru tied to the network's size (note 004): none "
                                           "(c = 1) or units (c = Σ N, the number of gated units: 400 on "
                                           "LeNet-300-100's hidden layers)", choices=SIZE_COEFFICIENTS, sweep=True)
    lambda_rule: str = option("stall", "when λ rises besides every --lambda-every epochs: schedule (never); stall "
                                       "(×factor when the gates stop moving: σ variance over the stall window below "
                                       "the stall threshold); slope (each epoch λ ← λ·min(factor, c/|ΔL_pru|), "
                                       "c = --slope-scale, when that is above 1)", choices=LAMBDA_RULES, sweep=True)
    stall_window: int = option(5, "epochs over which gate motion is measured")
    stall_threshold: float = option(1e-5, "gate motion (σ variance) below which the gates count as stalled")
    slope_scale: float = option(1e-3, "c of the slope rule: a change of L_pru (L_sel + L_rej, summed over layers) "
                                      "per epoch below c raises λ", sweep=True)
    gate_lr: float = option(0.01, "Adam learning rate of the gate weights", sweep=True)
    pruner_optimizer: str = option("gradient", "how gates learn: gradient (Adam at --gate-lr) or markov "
                                               "(w ← w + δ·U[−1,1], kept if L_tot falls); network weights always by "
                                               "gradient (--optimizer)", choices=("gradient", "markov"), sweep=True)
    markov_delta: float = option(0.1, "δ of the Markov proposals", sweep=True)
    gate_epsilon: float = option(0.01, "gates are decided when within ε of 0 or 1")
    gate_init_spread: float = option(0.0, "initial gate weights uniform in 4 ± spread (0: all equal; gates then "
                                          "differ only through the task loss)", sweep=True)
    gate_lr_schedule: str = option("fixed", "network learning rate during the gate training: fixed, step, plateau "
                                            "(as --lr-schedule), or on-pruning (×gamma once, when --lr-drop-share of "
                                            "the gates due to close have closed)", choices=GATE_LR_SCHEDULES,
                                   sweep=True)
    lr_drop_share: float = option(0.5, "on-pruning: share of the gates due to close (Σ N − n) that must be closed "
                                       "(σ < ½) before the learning rate drops", sweep=True)
    pruning_loss_only: bool = option(False, "train the gates on L_sel + L_rej alone (no task loss; the network "
                                            "weights stay as they are): the L_pru curve on its own")
    max_epochs: int = option(160, "epoch limit of the gate training", sweep=True)
    epochs: int = option(10, "fine-tuning epochs after the units are removed (0: none)", sweep=True)
    lr: float = option(0.01, "learning rate of the network weights (gate phase and fine-tuning)", sweep=True)

    def check(self):
        super().check()
        require(0 < self.keep <= 1, f"--keep must be in (0, 1], got {self.keep}")
        for flag, value in (("--gate-lr", self.gate_lr), ("--markov-delta", self.markov_delta),
                            ("--max-epochs", self.max_epochs), ("--lambda-start", self.lambda_start),
                            ("--lambda-every", self.lambda_every), ("--stall-window", self.stall_window),
                            ("--mu-window", self.mu_window)):
            positive(value, flag)
        require(0 < self.gate_epsilon < 0.5, f"--gate-epsilon must be in (0, 0.5), got {self.gate_epsilon}")
        require(0 < self.lr_drop_share <= 1, f"--lr-drop-share must be in (0, 1], got {self.lr_drop_share}")
        positive(self.slope_scale, "--slope-scale")
        positive(self.stall_threshold, "--stall-threshold")
        positive(self.gate_init_spread, "--gate-init-spread", allow_zero=True)
        # λ and μ multiply the pruning loss: an infinite one makes the total loss inf or NaN at the first raise
        require(math.isfinite(self.lambda_factor) and self.lambda_factor >= 1,
                f"--lambda-factor must be a finite number >= 1, got {self.lambda_factor}")
        require(math.isfinite(self.lambda_max) and self.lambda_max >= self.lambda_start,
                f"--lambda-max must be finite and >= --lambda-start, got {self.lambda_max}")
        require(self.mu in MU_RULES or (math.isfinite(self.mu) and self.mu > 0),
                f"--mu must be {' or '.join(MU_RULES)} or a finite positive number, got {self.mu}")
