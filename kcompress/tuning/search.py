"""The ``tune`` command: a Keras Tuner search over training or compression settings.

``tune --model M --data D --search grid --space lr=1e-4,1e-3 --space loss=mse,lse --out DIR``
trains one model per trial (every ``train`` flag is a base setting; ``--space`` items vary
some of them); with ``--from REF --method NAME`` each trial compresses the reference instead.
The tuning directory holds Keras Tuner's state, one folder per trial (with its model
directory), and the report (:mod:`kcompress.tuning.report`). Running the same command again
resumes a killed search; ``--chief``/``--worker`` spread the trials over processes.
"""
import contextlib
import json
import os
import shutil
from pathlib import Path

from kcompress.core.modeldir import check_apart, out_lock
from kcompress.core.source import Source
from kcompress.errors import require
from kcompress.tuning.distributed import is_tuning_worker, tuning_role
from kcompress.tuning.space import check_names, grid, grid_size, hyperparameters, parse_space

SEARCH_FILE = "search.json"
IGNORED_ON_RESUME = ("chief", "worker", "tuner_id", "overwrite")


def tune(out, settings, overwrite=False, from_dir=None, method=None, seed=0, **base):
    """Run (or resume) the search of :class:`~kcompress.tuning.settings.TuneSettings` ``settings``; returns the
    report's summary (``None`` on a worker).

    ``base`` holds the fixed settings of every trial: ``train``'s (model, data, epochs, ...) for a
    training search, the method's for a compression search (``from_dir`` and ``method``);
    ``settings.space`` lists ``NAME=VALUES`` strings (or YAML files) of the searched ones. ``overwrite`` runs
    the new search beside an existing one, which it replaces only once complete (:func:`_work_dir`)."""
    s = settings
    require(bool(from_dir) == bool(method), "--from and --method go together (a compression search)")
    if from_dir:
        check_apart(Path(out), Path(from_dir))
    space, search = s.space, s.search
    parsed = parse_space(space)
    source = {k: base.pop(k) for k in Source.names() if k in base} if method else {}
    # bad --data/--loss/--metric text: exit 2 before the reference loads (arrays from Python: when it loads)
    Source.from_dict({k: v for k, v in source.items() if isinstance(v, str)})
    runner = _runner(from_dir, method, base, seed, next(_corners(parsed)), source)
    check_names(parsed, runner.searchable, "with " + (f"--method {method}" if method else "training"))
    for values in _corners(parsed):
        runner.check(values)
    if search == "grid":
        print(f"grid search: {grid_size(parsed)} trials", flush=True)
    key = _objective(s.objective, runner)
    out = Path(out)
    recorded = dict(space=list(space), search=search, objective=key, max_trials=s.max_trials,
                    from_dir=str(from_dir) if from_dir else None, method=method, seed=seed, **source, **base)
    grid_values = grid(parsed) if search == "grid" else None
    oracle = run_search(out, recorded, hyperparameters(parsed), grid_values, runner, key, search, s.max_trials, seed,
                        overwrite, s.chief, s.worker, s.tuner_id)
    if oracle is None:
        return None
    from kcompress.tuning.report import write_report  # TensorFlow loads only when work needs it
    from kcompress.tuning.tuner import trial_rows

    return write_report(out, trial_rows(oracle), parsed, runner, key, search)


def run_search(out, settings, hp, grid_values, runner, key, search, max_trials, seed, overwrite=False, chief=None,
               worker=None, tuner_id=None, time_budget=None):
    """Run (or resume) the search of ``runner``'s trials over ``hp`` in tuning directory ``out``
    (``settings`` are what a resume must find unchanged); returns the oracle, ``None`` on a worker."""
    with contextlib.ExitStack() as held, tuning_role(chief, worker, tuner_id):
        work = out
        if not is_tuning_worker():
            if not chief:  # a chief's workers write trials into the same --out
                held.enter_context(out_lock(out))
            work = _work_dir(out, settings, overwrite, in_place=bool(chief))
        tuner = build_tuner(search, key, hp, grid_values, runner, max_trials, work, seed, time_budget)
        tuner.search(verbose=0)
        if is_tuning_worker():
            return None
        _replace(out, work)
    return tuner.oracle


def _runner(from_dir, method, base, seed, first, source):
    from kcompress.tuning.trials import CompressTrial, TrainTrial  # TensorFlow loads only when work needs it

    if method:
        return CompressTrial(from_dir, method, seed, base, first, source)
    return TrainTrial(base, seed)


def _objective(name, runner):
    from kcompress.tuning.trials import objective_key  # TensorFlow loads only when work needs it

    key = objective_key(name, runner.task)
    require(runner.data.has_val or not key.startswith("val_"),
            f"--objective {key} needs a validation split (--val-split > 0)")
    return key


def _corners(space):
    """One value dict per candidate of each setting (others at their first), to validate them all."""
    first = {n: (p.low if p.is_range else p.choices[0]) for n, p in space.items()}
    for name, p in space.items():
        for value in ((p.low, p.high) if p.is_range else p.choices):
            yield {**first, name: value}


def _work_dir(out, settings, overwrite, in_place=False):
    """Where the search runs: ``out`` itself, or with ``overwrite`` over an existing search a
    hidden sibling that :func:`_replace` swaps in once the new search is complete, so that a
    kill or an error keeps the old search; rerunning the same ``--overwrite`` command resumes
    the interrupted new search there. ``in_place`` (a chief, whose workers write into ``out``):
    the old search is deleted first."""
    require(not out.exists() or out.is_dir(), f"--out {out} exists and is not a directory")
    settings = json.loads(json.dumps(settings, default=str))
    if overwrite and out.exists() and not in_place:
        work = out.with_name(f".{out.name}.overwrite")
        if _changed(work, settings) != []:
            _start(work, settings)
        return work
    changed = None if overwrite else _changed(out, settings)
    require(not changed, f"--out {out} holds a search with other settings ({', '.join(changed or ())}): "
                         "use the same command to resume, or --overwrite to start afresh")
    require(changed is not None or overwrite or not out.exists() or not any(out.iterdir()),
            f"--out {out} exists and holds no search (no {SEARCH_FILE}): use --overwrite to replace it")
    if changed is None:
        _start(out, settings)
    return out


def _changed(out, settings):
    """The settings that differ from those of the search in ``out`` (``None``: no search there)."""
    path = out / SEARCH_FILE
    if not path.is_file():
        return None
    before = json.loads(path.read_text())
    return sorted(k for k in set(before) | set(settings)
                  if k not in IGNORED_ON_RESUME and before.get(k) != settings.get(k))


def _start(out, settings):
    """A fresh tuning directory ``out`` holding only ``search.json``."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / SEARCH_FILE).write_text(json.dumps(settings, indent=2, default=str) + "\n")


def _replace(out, work):
    """Put the complete search in ``work`` in place of ``out`` (the old one goes last)."""
    if work == out:
        return
    trash = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(trash)
    work.rename(out)
    shutil.rmtree(trash, ignore_errors=True)


def build_tuner(search, objective, hp, grid_values, runner, max_trials, out, seed, time_budget=None):
    """A :class:`~kcompress.tuning.oracles.KcTuner` over the Keras Tuner ``hp`` (``grid_values``: the
    value dicts of a grid search) in tuning directory ``out`` (reloaded if it exists)."""
    from kcompress.tuning.oracles import make_oracle  # TensorFlow loads only when work needs it
    from kcompress.tuning.tuner import KcTuner

    budget = runner.max_budget() if search == "hyperband" else None
    oracle = make_oracle(search, objective, hp, grid_values, max_trials, budget, seed, time_budget)
    oracle.first = list(getattr(runner, "first_trials", list)())  # known-good starting points, if the runner has any
    oracle.refine = getattr(runner, "refined_trial", None)
    return KcTuner(oracle, runner, objective, directory=str(out.parent), project_name=out.name, overwrite=False)

