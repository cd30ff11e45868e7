"""Settings of ``tune`` and of ``compress --method auto`` (no TensorFlow: the CLI builds ``--help`` from them).

``auto`` is not a registered method: it searches the registered ones (and their declared chains)
with Keras Tuner for the smallest ``--objective`` whose validation error stays within the
budget — ``--max-error`` absolute, or the reference's validation error plus
``--max-error-increase`` — see :mod:`kcompress.tuning.auto`.
"""
import importlib.util
import re
from dataclasses import dataclass
from typing import Optional

from kcompress.core.settings import Settings, option, positive, split_list
from kcompress.errors import UsageError, require
from kcompress.methods import REGISTRY

OBJECTIVES = ("bits", "gzip-tflite", "deployed-size", "latency", "params")
SEARCHES = ("grid", "random", "bayesian", "hyperband")  # the Keras Tuner oracles of tune
AUTO_SEARCHES = ("bayesian", "random", "grid")  # hyperband's brackets do not fit a budget of compressions
SELECTIONS = ("auto", "validation", "test-half")
SELECTION_MIN = 2000  # examples: on the sample's 500 validation images one image is 0.2 pp of a 0.5 pp budget
UNITS = {"s": 1, "m": 60, "h": 3600}
UNLIMITED = 999  # the trial limit under --time-budget alone (Keras Tuner pads trial ids to its width)


def parse_duration(value):
    """``"30m"`` -> 1800.0 seconds (``s``, ``m``, ``h``; a bare number is seconds)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([smh]?)\s*", str(value))
    try:
        seconds = float(match.group(1)) * UNITS[match.group(2) or "s"]
    except (AttributeError, ValueError):
        raise UsageError(f"--time-budget {value!r}: expected a duration such as 90s, 30m or 2h") from None
    require(seconds > 0, f"--time-budget must be positive, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Workers(Settings):
    """Where the trials of a search run: in this process, or spread over a chief and its workers."""

    chief: Optional[str] = option(None, "serve the search to workers at HOST:PORT; exits when done (unset: the "
                                        "trials run in this process)", metavar="HOST:PORT")
    worker: Optional[str] = option(None, "run trials for the chief at HOST:PORT (unset: not a worker)",
                                   metavar="HOST:PORT")
    tuner_id: Optional[str] = option(None, "a worker's name (unset: worker-PID); reuse it to resume a killed worker")


@dataclass(frozen=True)
class TuneSettings(Workers):
    """The search of ``tune``: which settings vary, the oracle, what it minimises, how many trials."""

    space: tuple = option((), "a searched setting: lr=1e-4,1e-3 (choice), momentum=0.5:0.99 (range), "
                              "lr=1e-5:1e-1:log, epochs=2:8:2 (stepped), or a YAML file; repeat the flag",
                          metavar="NAME=VALUES")
    search: str = option("random", "Keras Tuner oracle", choices=SEARCHES)
    objective: Optional[str] = option(None, "what to minimise: val_loss, val_error, test_error, max_error, mae "
                                            "(unset: val_error for classes, max_error (ε) for regression)")
    max_trials: int = option(10, "trials of random/bayesian searches (grid: the whole grid)")

    def check(self):
        positive(self.max_trials, "--max-trials")
        require(self.search != "bayesian" or importlib.util.find_spec("sklearn") is not None,
                "--search bayesian needs scikit-learn (pip install scikit-learn); use random, grid or hyperband")


@dataclass(frozen=True)
class AutoSettings(Workers):
    """What the auto search minimises, within which error budget, and for how long."""

    objective: str = option("bits", "what to minimise: storage bits, gzip'd float32 TFLite bytes, deployed-size "
                                    "(the smallest gzip'd file of any TFLite variant, int8 included, or ONNX whose "
                                    "own validation error, run in its runtime, is within the budget; against the "
                                    "reference's float32 TFLite), onnxruntime latency (batch 256, one thread, vs "
                                    "the reference) or parameters",
                            choices=OBJECTIVES)
    max_error_increase: float = option(0.5, "error budget over the reference's validation error: percentage "
                                            "points for classes, positions of ε for learned indexes")
    max_error: Optional[float] = option(None, "absolute budget on the validation error instead (%, or ε in "
                                              "positions; unset: --max-error-increase decides)")
    selection: str = option("auto", "the examples trials are judged on: validation (the reference's validation "
                                    "split), test-half (half the test split, chosen at random; the chosen model's "
                                    "final test on the other half, paired with the reference's on the same "
                                    f"examples), auto (a classifier's validation split when it holds at least "
                                    f"{SELECTION_MIN:,} examples, else test-half: on 500 images one image is 0.2 pp)",
                            choices=SELECTIONS)
    confidence: float = option(0.9, "a classifier's trial is within the budget when its error on the selection "
                                    "examples plus this one-sided confidence's normal quantile times the standard "
                                    "error of its paired difference from the reference is (0.5: the error alone)")
    methods: Optional[str] = option(None, "comma list of methods and chains A>B to search (unset: every method and "
                                          "declared chain that lowers --objective)")
    space: tuple = option((), "METHOD.FIELD=VALUES replaces a method's declared search space for a field (a single "
                              "value fixes it), e.g. prune.epochs=5 or lc.mu_steps=20,40; repeat the flag",
                          metavar="METHOD.FIELD=VALUES")
    search: str = option("bayesian", "Keras Tuner oracle", choices=AUTO_SEARCHES)
    max_trials: Optional[int] = option(None, "trials to run (unset: 20, or unlimited with --time-budget)")
    time_budget: Optional[float] = option(None, "start no trial once the finished trials took this long, e.g. 30m "
                                                "or 2h (unset: no time limit)", parse=parse_duration,
                                          metavar="DURATION")

    def check(self):
        require(0.5 <= self.confidence < 1, f"--confidence must be in [0.5, 1), got {self.confidence}")
        positive(self.max_error_increase, "--max-error-increase", allow_zero=True)
        positive(self.max_error, "--max-error", allow_zero=True)
        positive(self.max_trials, "--max-trials")
        if self.methods is not None:  # the names, before the reference loads (chains are checked then)
            stages = [stage for name in split_list(self.methods) for stage in str(name).split(">")]
            unknown = [stage for stage in stages if stage not in REGISTRY]
            require(stages, f"--methods {self.methods!r}: no method named")
            if unknown:
                raise UsageError(f"--methods {self.methods!r}: unknown --method {unknown[0]!r} "
                                 f"(one of {', '.join(REGISTRY)})")

    @property
    def trials(self):
        """The trial limit the oracle gets (a time budget alone: practically none)."""
        return self.max_trials or (UNLIMITED if self.time_budget else 20)
