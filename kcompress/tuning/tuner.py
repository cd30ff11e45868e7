"""A Keras Tuner ``Tuner`` that never sees a model.

Keras Tuner 1.4.8 checks built models against Keras 3 and clears the Keras 3 session, while
kcompress models are tf_keras. :class:`KcTuner` therefore overrides ``run_trial`` (the "tune
anything" pattern): it hands the trial's values to a runner (:mod:`kcompress.tuning.trials`),
clears the tf_keras session itself, and returns the runner's metrics. A diverged run or a NaN
objective is a failed trial, not a crash, and so is a trial that cannot run in a space the search
made itself (:class:`TrialImpossible`, ``compress --method auto``); a bad setting the user gave
stops the search with exit 2.
"""
import math
import time
from pathlib import Path

import keras_tuner as kt

from kcompress.backend import keras
from kcompress.errors import TrainingDiverged, UsageError
from kcompress.tuning.distributed import is_tuning_chief, serve_oracle


class BadSetting(kt.errors.FatalError, UsageError):
    """A trial's settings are unusable: the search stops (a Keras Tuner ``FatalError``) and the CLI exits
    with code 2 (a ``UsageError``: as a ``FatalError`` alone it was reported as an internal error)."""


class TrialImpossible(kt.errors.FailedTrialError):
    """A trial of a space the search made itself cannot run: it fails, the search goes on."""


class KcTuner(kt.Tuner):
    """Runs each trial through ``runner`` and reports its metrics; ``objective`` is a metric key."""

    def __init__(self, oracle, runner, objective, **kwargs):
        self.runner = runner
        self.objective_key = objective
        super().__init__(oracle, hypermodel=None, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        keras.backend.clear_session()
        values = dict(trial.hyperparameters.values)
        hyperband = {k[len("tuner/"):]: values.pop(k) for k in list(values) if k.startswith("tuner/")}
        warm = self._hyperband_args(hyperband, values)
        total = self.oracle.max_trials
        shown = f"{trial.trial_id}{f'/{total}' if total else ''} " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        start = time.perf_counter()
        try:
            metrics = self.runner.run(values, Path(self.get_trial_dir(trial.trial_id)), **warm)
        except (TrainingDiverged, TrialImpossible) as e:
            print(f"trial {shown}: failed ({e})", flush=True)
            raise kt.errors.FailedTrialError(str(e)) from None
        except UsageError as e:
            raise BadSetting(str(e)) from None
        finally:
            keras.backend.clear_session()
        score = metrics.get(self.objective_key, float("nan"))
        print(f"trial {shown}: {self.objective_key} {score:.4g} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        if not math.isfinite(score):
            raise kt.errors.FailedTrialError(f"the objective {self.objective_key} is {score}")
        if hasattr(self.runner, "progress"):
            print(self.runner.progress(self.oracle, trial.trial_id, metrics), flush=True)
        return metrics

    def _hyperband_args(self, hyperband, values):
        """Hyperband's ``tuner/*`` values -> the runner's budget setting (epochs, or μ steps for LC,
        ...) for this round, and the trial it continues when the runner can resume one; a runner
        that cannot (a compression) runs the round's whole budget from the reference."""
        if not hyperband:
            return {}
        parent = hyperband.get("trial_id") if self.runner.resumable else None
        initial = int(hyperband.get("initial_epoch", 0)) if parent else 0
        values[self.runner.budget] = int(hyperband["epochs"]) - initial
        return {"warm_start": self.get_trial_dir(parent)} if parent else {}

    def search(self, *args, **kwargs):
        """As Keras Tuner's, except that a chief serves the oracle until the search is done, then returns."""
        if is_tuning_chief():
            self.save()
            serve_oracle(self.oracle)
            return
        super().search(*args, **kwargs)


def trial_rows(oracle):
    """Every trial as a plain dict: id, status, values, metrics (as reported) and score."""
    rows = []
    for trial_id in sorted(oracle.trials):
        t = oracle.trials[trial_id]
        metrics = {name: t.metrics.get_last_value(name) for name in t.metrics.metrics}
        rows.append({"trial": trial_id, "status": t.status, "values": dict(t.hyperparameters.values),
                     "metrics": metrics, "score": t.score})
    return rows
