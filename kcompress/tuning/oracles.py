"""Keras Tuner oracles that survive a kill.

Resuming: oracles reload their state from the tuning directory, and a trial that a kill
interrupted runs again (from its last finished epoch, via the runner's backup). Keras Tuner's
``GridSearchOracle`` keeps its walk through the grid in memory only, so after a reload it
stops early or repeats; :class:`GridOracle` instead visits the product of the candidate lists
in order and takes the first combination that no trial holds yet, which needs no memory and
also lets several workers run grid trials at once.
"""
import sys

import keras_tuner as kt
from keras_tuner.src.engine import trial as trial_module

RUNNING, STOPPED = trial_module.TrialStatus.RUNNING, trial_module.TrialStatus.STOPPED
COMPLETED = trial_module.TrialStatus.COMPLETED
NO_FAILURE_LIMIT = sys.maxsize  # a grid may hold whole rows that diverge (lr too high): keep going


class _ResumableOracle:
    """Oracle mixin: after a reload, every trial left RUNNING by a kill is queued to run again.

    Keras Tuner requeues the trials its ``oracle.json`` lists as ongoing; a kill between
    writing a trial and writing ``oracle.json`` would leave that trial RUNNING forever.
    With ``time_budget`` (seconds) no new trial starts once the finished trials' ``seconds``
    add up to it: counted from the oracle's own state, so it survives a kill and a resume.
    """

    time_budget = None
    unique = False  # random and Bayesian search: never propose values a trial already holds
    first = ()  # value dicts tried before the oracle's own proposals (the auto search's known-good recipes)
    refine = None  # (values, metrics) of the completed trials -> a value dict to try next, or None

    def spent_seconds(self):
        """The summed ``seconds`` metric of the trials that finished."""
        found = (t.metrics.get_last_value("seconds") for t in self.trials.values() if t.metrics.exists("seconds"))
        return float(sum(s for s in found if s is not None))

    def populate_space(self, trial_id):
        if self.time_budget is not None and self.spent_seconds() >= self.time_budget:
            return {"status": STOPPED, "values": None}
        untried = [v for v in self.first if not self._repeats(v)]
        if untried:  # counted by a Bayesian oracle among its initial points, as its random ones would be
            return {"status": RUNNING, "values": dict(untried[0])}
        refined = self.refine(self._completed()) if self.refine is not None else None
        if refined is not None and not self._repeats(refined):
            return {"status": RUNNING, "values": dict(refined)}
        proposal = super().populate_space(trial_id)
        if self.unique and proposal.get("values") is not None and self._repeats(proposal["values"]):
            # Keras Tuner's Bayesian oracle re-proposed one LC setting 9 times in a row in an auto
            # search (its optimiser lands on the same categorical choice): take an untried random point.
            values = self._random_values()
            proposal = {"status": RUNNING, "values": values} if values is not None else {"status": STOPPED, "values": None}
        return proposal

    def _completed(self):
        """``[(values, metrics)]`` of the completed trials, metrics as their last values."""
        return [(dict(t.hyperparameters.values), {k: t.metrics.get_last_value(k) for k in t.metrics.metrics})
                for t in self.trials.values() if t.status == COMPLETED]

    def _active(self, values):
        """``values`` restricted to the hyperparameters active under them (a method's own settings)."""
        hps = self.hyperparameters.copy()
        hps.values = dict(values)
        return tuple(sorted((hp.name, repr(values.get(hp.name))) for hp in hps.space if hps.is_active(hp)))

    def _repeats(self, values):
        """Whether a trial already holds ``values`` (compared on the active hyperparameters)."""
        key = self._active(values)
        return any(self._active(t.hyperparameters.values) == key for t in self.trials.values())

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


def make_oracle(search, objective, hyperparameters, grid, max_trials, max_epochs, seed, time_budget=None):
    """The oracle for ``--search``; ``grid`` is used by grid search, ``max_epochs`` by hyperband;
    ``time_budget``: seconds of finished trials after which no trial starts."""
    common = dict(objective=kt.Objective(objective, "min"), hyperparameters=hyperparameters, seed=seed,
                  max_consecutive_failed_trials=NO_FAILURE_LIMIT)
    if search == "grid":
        oracle = GridOracle(grid, **common)
        oracle.time_budget = time_budget
        return oracle
    if search == "hyperband":
        base, extra = kt.oracles.HyperbandOracle, dict(max_epochs=max_epochs)
    else:
        base = {"random": kt.oracles.RandomSearchOracle, "bayesian": kt.oracles.BayesianOptimizationOracle}[search]
        extra = dict(max_trials=max_trials)
    cls = type(f"Resumable{base.__name__}", (_ResumableOracle, base),
               {"time_budget": time_budget, "unique": search != "hyperband"})
    return cls(**common, **extra)
