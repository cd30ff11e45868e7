"""Keras Tuner glue: oracles that survive a kill, and a ``Tuner`` that never sees a model.

Keras Tuner 1.4.8 checks built models against Keras 3 and clears the Keras 3 session, while
kcompress models are tf_keras. :class:`KcTuner` therefore overrides ``run_trial`` (the
"tune anything" pattern): it hands the trial's values to a runner (:mod:`kcompress.hypermodel`),
clears the tf_keras session itself, and returns the runner's metrics. A diverged run or a
NaN objective is a failed trial, not a crash; a bad setting stops the search with exit 2.

Resuming: oracles reload their state from the tuning directory, and a trial that a kill
interrupted runs again (from its last finished epoch, via the runner's backup). Keras Tuner's
``GridSearchOracle`` keeps its walk through the grid in memory only, so after a reload it
stops early or repeats; :class:`GridOracle` instead visits the product of the candidate lists
in order and takes the first combination that no trial holds yet, which needs no memory and
also lets several workers run grid trials at once.
"""
import math
import sys
import time
from pathlib import Path

import keras_tuner as kt
from keras_tuner.src.engine import trial as trial_module

from kcompress.backend import keras
from kcompress.errors import TrainingDiverged, UsageError

RUNNING, STOPPED = trial_module.TrialStatus.RUNNING, trial_module.TrialStatus.STOPPED
NO_FAILURE_LIMIT = sys.maxsize  # a grid may hold whole rows that diverge (lr too high): keep going


class BadSetting(kt.errors.FatalError):
    """A trial's settings are unusable: the search stops and the CLI exits with code 2."""


class _ResumableOracle:
    """Oracle mixin: after a reload, every trial left RUNNING by a kill is queued to run again.

    Keras Tuner requeues the trials its ``oracle.json`` lists as ongoing; a kill between
    writing a trial and writing ``oracle.json`` would leave that trial RUNNING forever.
    """

    def reload(self):
        super().reload()
        for trial_id, trial in sorted(self.trials.items()):
            if trial.status == RUNNING and trial_id not in self._retry_queue:
                self._retry_queue.append(trial_id)
            if trial_id not in self.start_order:
                self.start_order.append(trial_id)


class GridOracle(_ResumableOracle, kt.Oracle):
    """Exhaustive search over ``grid`` (a list of value dicts), in order, resumable."""

    def __init__(self, grid, **kwargs):
        super().__init__(max_trials=len(grid), **kwargs)
        self.grid = grid

    @staticmethod
    def _key(values):
        return tuple(sorted((k, repr(v)) for k, v in values.items()))

    def populate_space(self, trial_id):
        taken = {self._key(t.hyperparameters.values) for t in self.trials.values()}
        for values in self.grid:
            if self._key(values) not in taken:
                return {"status": RUNNING, "values": dict(values)}
        return {"status": STOPPED, "values": None}


def make_oracle(search, objective, hyperparameters, grid, max_trials, max_epochs, seed):
    """The oracle for ``--search``; ``grid`` is used by grid search, ``max_epochs`` by hyperband."""
    common = dict(objective=kt.Objective(objective, "min"), hyperparameters=hyperparameters, seed=seed,
                  max_consecutive_failed_trials=NO_FAILURE_LIMIT)
    if search == "grid":
        return GridOracle(grid, **common)
    if search == "hyperband":
        base, extra = kt.oracles.HyperbandOracle, dict(max_epochs=max_epochs)
    else:
        base = {"random": kt.oracles.RandomSearchOracle, "bayesian": kt.oracles.BayesianOptimizationOracle}[search]
        extra = dict(max_trials=max_trials)
    cls = type(f"Resumable{base.__name__}", (_ResumableOracle, base), {})
    return cls(**common, **extra)


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
        except TrainingDiverged as e:
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
        return metrics

    def _hyperband_args(self, hyperband, values):
        """Hyperband's ``tuner/*`` values -> epochs of this round and the trial it continues."""
        if not hyperband:
            return {}
        initial = int(hyperband.get("initial_epoch", 0))
        values["epochs"] = int(hyperband["epochs"]) - initial
        parent = hyperband.get("trial_id")
        return {"warm_start": self.get_trial_dir(parent) if parent else None, "initial_epoch": initial if parent else 0}

    def search(self, *args, **kwargs):
        """As Keras Tuner's, except that a chief serves the oracle until the search is done, then returns."""
        from kcompress.distribute import is_tuning_chief, serve_oracle

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
