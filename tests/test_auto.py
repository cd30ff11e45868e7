"""compress --method auto: candidates and spaces from the settings, a tiny real search (within
budget, non-dominated front, the chosen model exported and checked), resume without repeats,
learned-index keys and a tabular npz, usage errors."""
import csv
import json

import numpy as np
import pytest

from kcompress.cli.main import main
from kcompress.errors import UsageError
from kcompress.tuning.settings import parse_duration

TINY = {"methods": "prune,cluster", "space": ["prune.epochs=1", "cluster.epochs=1", "prune.sparsity=0.5",
                                               "cluster.clusters=8,16"]}


class Killed(BaseException):
    """Stands in for SIGKILL: Keras Tuner catches Exception, not this."""


def test_candidates_follow_the_declared_spaces_and_chains():
    from kcompress.tuning.auto import candidate_names, method_spaces

    assert candidate_names("latency") == ["pruner", "alpha"]  # only these remove units or parameters
    bits = candidate_names("bits")
    assert {"prune", "cluster", "prune+cluster", "lc", "pruner", "pruner>lc", "lc>cluster"} <= set(bits)
    assert "alpha>lc" not in bits and "lc>cluster" not in candidate_names("latency")
    spaces = method_spaces(["pruner>lc"], ["lc.task=all:prune-l0:kappa=0.01", "pruner.keep=0.3:0.4"])
    assert spaces["lc"]["task"].choices == ("all:prune-l0:kappa=0.01",)
    assert (spaces["pruner"]["keep"].low, spaces["pruner"]["keep"].high) == (0.3, 0.4)
    assert method_spaces(["prune+cluster"])["prune+cluster"]["clusters"].choices == (4, 8, 16)  # as declared
    for bad in ("lc>pruner", "prune,nosuch"):
        with pytest.raises(UsageError):
            candidate_names("bits", bad)
    with pytest.raises(UsageError, match="no setting"):
        method_spaces(["prune"], ["prune.nosuch=1"])


def test_durations():
    assert [parse_duration(t) for t in ("90s", "30m", "2h", "5")] == [90, 1800, 7200, 5]
    with pytest.raises(UsageError):
        parse_duration("soon")


def test_front_is_non_dominated():
    from kcompress.tuning.pareto import non_dominated

    points = [(1, 5), (2, 4), (2, 6), (3, 4), (0.5, 9)]
    assert non_dominated(points) == [0, 1, 4]


def test_an_error_exactly_at_the_budget_is_within_it():
    from kcompress.tuning.auto import OVER_BUDGET, AutoTrial

    trial = AutoTrial.__new__(AutoTrial)  # only the budget matters here
    trial.error_budget, trial.reference_objective = 100 * (1 - 0.95) + 1.0, 8.0
    assert trial.within(100 * (1 - 0.94)) and not trial.within(6.1)
    assert trial.score(2.0, 6.0) == 0.25 and trial.score(1.0, 6.1) == pytest.approx(OVER_BUDGET + 0.1)


def _dominated(a, b):
    """Whether trial metrics ``a`` are dominated by ``b``."""
    x, y = (a["objective"], a["val_error"]), (b["objective"], b["val_error"])
    return y[0] <= x[0] and y[1] <= x[1] and y != x


def test_auto_search_chooses_within_budget_exports_and_checks(reference_dir, tmp_path):
    from kcompress import api

    out = tmp_path / "auto"
    summary = api.compress(reference_dir, "auto", out, search="grid", max_error_increase=2.0, **TINY)
    with open(out / "trials.csv") as f:
        metrics = [{k: float(r[k]) for k in ("objective", "val_error")} for r in csv.DictReader(f)
                   if r["status"] == "completed"]
    assert len(metrics) == 3  # the grid: 1 sparsity + 2 cluster counts
    chosen = summary["chosen"]
    assert chosen and chosen["val_error"] <= summary["error_budget"]
    within = [m for m in metrics if m["val_error"] <= summary["error_budget"] + 1e-9]
    assert chosen["objective"] == min(m["objective"] for m in within)
    front = [m for m in metrics if not any(_dominated(m, o) for o in metrics)]
    assert len(front) == len(summary["front"]) and (out / "pareto.png").is_file()
    assert (out / "pareto.csv").read_text().count("\n") == len(front) + 1
    report = json.loads((out / "exported" / "report.json").read_text())
    assert report["passed"] and summary["export"]["passed"] and (out / "best" / "run.json").is_file()
    assert summary["test"]["test_error"] == pytest.approx(json.loads((out / "best" / "run.json").read_text())
                                                          ["metrics"]["test_error"])
    assert "deployment check: pass" in (out / "summary.md").read_text()


def test_resume_after_a_kill_repeats_no_trial(reference_dir, tmp_path, monkeypatch):
    from kcompress import api
    from kcompress.tuning.auto import AutoTrial

    calls, real = [], AutoTrial.run

    def run(self, values, folder):
        calls.append(folder.name)
        if len(calls) == 2:
            raise Killed()
        return real(self, values, folder)

    monkeypatch.setattr(AutoTrial, "run", run)
    settings = dict(search="random", max_trials=2, max_error_increase=5.0, **TINY)
    with pytest.raises(Killed):
        api.compress(reference_dir, "auto", tmp_path / "auto", **settings)
    assert calls == ["trial_0", "trial_1"]
    summary = api.compress(reference_dir, "auto", tmp_path / "auto", **settings)
    assert calls[2:] == ["trial_1"]  # the killed trial again; trial 0 is not redone
    assert summary["completed"] == 2


def test_learned_index_keys_judge_epsilon_on_the_keys_within_a_time_budget(tmp_path):
    from kcompress import api

    api.train(tmp_path / "index", model="index64", data="keys:uniform:600", epochs=1, seed=0, verbose=0)
    summary = api.compress(tmp_path / "index", "auto", tmp_path / "auto", objective="gzip-tflite",
                           methods="cluster", space=["cluster.epochs=1"], time_budget="1s", max_error=1e9,
                           search="random")
    assert summary["trials"] == 1  # the first trial spends the second
    assert summary["chosen"]["val_error"] > 0 and summary["export"]["passed"]
    none = api.compress(tmp_path / "index", "auto", tmp_path / "none", objective="bits", methods="cluster",
                        space=["cluster.epochs=1", "cluster.clusters=2"], max_trials=1, max_error=0.0, search="random")
    assert none["chosen"] is None and none["completed"] == 1
    assert not (tmp_path / "none" / "best").exists() and not (tmp_path / "none" / "exported").exists()
    assert "no trial within the budget" in (tmp_path / "none" / "summary.md").read_text()


def test_tabular_npz_and_a_reference_without_validation(tmp_path, capsys):
    from kcompress import api

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    np.savez(tmp_path / "t.npz", x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    api.train(tmp_path / "ref", model="lenet300", data=str(tmp_path / "t.npz"), epochs=3, seed=0, verbose=0)
    summary = api.compress(tmp_path / "ref", "auto", tmp_path / "auto", objective="params", methods="pruner",
                           space=["pruner.max_epochs=2", "pruner.epochs=1", "pruner.keep=0.5"], max_trials=1,
                           max_error_increase=100, search="random")
    assert summary["chosen"]["objective"] < summary["reference"]["objective"]  # units really removed
    api.train(tmp_path / "noval", model="lenet300", data=str(tmp_path / "t.npz"), epochs=1, seed=0, verbose=0,
              val_split=0)
    code = main(["compress", "--from", str(tmp_path / "noval"), "--method", "auto", "--selection", "validation",
                 "--out", str(tmp_path / "x")])
    assert code == 2 and "--val-split" in capsys.readouterr().err
    from kcompress.pipeline import load_reference
    from kcompress.tuning.auto import selection_split

    assert selection_split(load_reference(tmp_path / "noval").data)[2] == "half the test split (30 examples)"


@pytest.mark.parametrize("args, message", [
    (["--methods", "nosuch"], "unknown --method"),
    (["--space", "prune.sparsity"], "METHOD.FIELD=VALUES"),
    (["--time-budget", "soon"], "--time-budget"),
    (["--objective", "speed"], "--objective"),
])
def test_auto_usage_errors(reference_dir, tmp_path, capsys, args, message):
    code = main(["compress", "--from", str(reference_dir), "--method", "auto", "--out", str(tmp_path / "a"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]


def test_a_trial_that_cannot_run_fails_and_the_search_goes_on(reference_dir, tmp_path, monkeypatch):
    """The search's own space may hold a combination that cannot run (a chain stage with nothing left
    to do): that trial fails, the others run, the search ends normally."""
    from kcompress import api, pipeline

    real = pipeline.compress_one

    def compress_one(ref, settings, *args, **kwargs):
        if getattr(settings, "clusters", None) == 8:
            raise UsageError("--layers: tfmot can wrap none of dense_1 (already holds 2 distinct values)")
        return real(ref, settings, *args, **kwargs)

    monkeypatch.setattr(pipeline, "compress_one", compress_one)
    out = tmp_path / "auto"
    summary = api.compress(reference_dir, "auto", out, search="grid", max_error_increase=5.0, **TINY)
    with open(out / "trials.csv") as f:
        status = sorted(r["status"] for r in csv.DictReader(f))
    assert status == ["completed", "completed", "failed"] and summary["chosen"]


def test_a_bayesian_search_repeats_no_trial(reference_dir, tmp_path, monkeypatch):
    """Keras Tuner's Bayesian oracle re-proposed the best categorical choice again and again (the
    inactive settings of the other methods differ, so it saw no duplicate): every trial is new."""
    from kcompress import api
    from kcompress.tuning.auto import OVER_BUDGET, AutoTrial

    seen = []

    def run(self, values, folder):
        method = values["method"]
        own = tuple(sorted((k, v) for k, v in values.items() if k == "method" or k.split(".")[0] in method.split(">")))
        seen.append(own)
        best = "kappa=0.01" in str(values.get("lc.task"))
        return {"auto_score": OVER_BUDGET + (0.0 if best else 1.0), "val_error": 50.0, "objective": 1.0, "ratio": 1.0,
                "within_budget": 0.0, "bits_ratio": 1.0, "params": 1.0, "seconds": 0.0}

    monkeypatch.setattr(AutoTrial, "run", run)
    space = ["lc.task=all:prune-l0:kappa=0.01;all:prune-l0:kappa=0.02", "prune.sparsity=0.5:0.9"]
    summary = api.compress(reference_dir, "auto", tmp_path / "auto", search="bayesian", max_trials=10,
                           methods="lc,prune", space=space, max_error_increase=0.5)
    assert len(seen) == len(set(seen)) == 10 and summary["chosen"] is None


def test_a_small_validation_split_gives_way_to_half_the_test_split(small_mnist):
    from dataclasses import replace

    from kcompress.tuning.auto import selection_split, test_halves

    x, _, name = selection_split(small_mnist)  # 500 validation images: one image is 0.2 pp
    chosen, held = test_halves(small_mnist, seed=0)
    assert len(x) == len(chosen) == 250 and name == "half the test split (250 examples)"
    assert not set(chosen) & set(held) and sorted([*chosen, *held]) == list(range(500))
    np.testing.assert_array_equal(x, small_mnist.x_test[chosen])
    big = replace(small_mnist, x_val=np.zeros((2000, 784), "float32"), y_val=np.zeros(2000, "int64"))
    assert selection_split(big)[2] == "the validation split (2000 examples)"
    assert selection_split(small_mnist, "validation")[2] == "the validation split (500 examples)"
    assert selection_split(big, "test-half")[2] == "half the test split (250 examples)"


def test_the_search_starts_from_the_known_good_recipes(reference_dir):
    from kcompress.methods import settings_class
    from kcompress.tuning.auto import AutoTrial
    from kcompress.tuning.settings import AutoSettings

    runner = AutoTrial(reference_dir, AutoSettings(max_trials=6))
    first = runner.first_trials()
    assert len(first) == 3  # half the trials: the oracle's own search keeps the other half
    assert [v["method"] for v in first] == ["lc>cluster", "lc>qat", "prune+cluster>qat"]  # 36.4·7.9, 36.4·4, 31.2·4
    assert first[0] == {"method": "lc>cluster", "lc.task": "all:prune-l0:kappa=0.02", "cluster.clusters": 16}
    assert all(f in settings_class(m).RECIPE for m in runner.spaces for f in runner.spaces[m])
    moved = AutoTrial(reference_dir, AutoSettings(methods="prune", space=("prune.sparsity=0.5:0.8",)))
    assert moved.first_trials() == [{"method": "prune", "prune.sparsity": 0.5}]  # 0.95 is out of the given range


def test_the_recipes_are_tried_before_the_oracle_s_own_proposals(reference_dir, tmp_path):
    from kcompress import api

    out = tmp_path / "auto"
    api.compress(reference_dir, "auto", out, methods="prune,cluster", max_trials=2, max_error_increase=5.0,
                 space=["prune.epochs=1", "cluster.epochs=1"])
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["method"] == "prune" and float(rows[0]["prune.sparsity"]) == 0.95  # the recipe, then Bayesian
    summary = json.loads((out / "summary.json").read_text())
    assert summary["selection"] == "half the test split (5000 examples)"
    if summary["chosen"]:
        held = summary["held_out"]
        assert held["n"] == 5000 and held["ci95"][0] <= held["difference"] <= held["ci95"][1]
        assert held["difference"] == pytest.approx(held["error"] - held["reference"])


def test_after_the_recipes_the_search_bisects_between_the_best_within_budget_and_the_nearest_over_it(reference_dir):
    from kcompress.tuning.auto import AutoTrial
    from kcompress.tuning.settings import AutoSettings

    runner = AutoTrial(reference_dir, AutoSettings(methods="prune+cluster,prune"))

    def values(sparsity, clusters):
        return {"method": "prune+cluster", "prune+cluster.sparsity": sparsity, "prune+cluster.clusters": clusters}

    def trial(sparsity, clusters, ratio, within, error):
        return values(sparsity, clusters), {"ratio": ratio, "within_budget": float(within), "val_error": error}

    done = [trial(0.9, 16, 31.2, True, 6.0), trial(0.93, 4, 49.8, False, 6.88), trial(0.98, 4, 80.0, False, 9.0),
            ({"method": "prune", "prune.sparsity": 0.98}, {"ratio": 50.0, "within_budget": 0.0, "val_error": 6.5})]
    # the nearest over budget of the same method (6.88 %, not 9 %; the prune trial is another method)
    assert runner.refined_trial(done) == {**values(pytest.approx(0.915), 8)}
    # nothing over budget to bisect towards, or nothing between (16 and 8 are neighbours, the sparsity the
    # same): the best's first untried neighbour, the bolder step first (sparsity up a tenth of 0.8-0.98)
    bolder = values(pytest.approx(0.918), 16)
    assert runner.refined_trial(done[:1] + done[3:]) == bolder
    assert runner.refined_trial([trial(0.9, 16, 31.2, True, 6.0), trial(0.9, 8, 40.0, False, 6.5)]) == bolder
    assert runner.refined_trial([trial(0.9, 16, 31.2, True, 6.0), trial(0.918, 16, 33.0, False, 6.4)]) == \
        values(pytest.approx(0.909), 16)  # the bisection again: halfway to the bolder step that broke the budget
    assert runner.refined_trial([trial(0.9, 16, 31.2, False, 7.0)]) is None  # nothing within: the oracle's turn


def test_the_budget_judges_the_paired_difference_with_its_confidence(reference_dir):
    from kcompress.core.objectives import predict, predicted_classes
    from kcompress.tuning.auto import AutoTrial
    from kcompress.tuning.settings import AutoSettings

    for confidence, margin in ((0.9, 0.0810), (0.5, 0.0)):
        runner = AutoTrial(reference_dir, AutoSettings(methods="prune", confidence=confidence))
        x, y = runner.split
        assert len(y) == 5000  # half the test split
        out = predict(runner.reference.model, x)
        assert runner.error(runner.reference.model, out) == pytest.approx(runner.reference_error)  # no difference
        worse = out.copy()
        right = np.flatnonzero(predicted_classes(out, runner.data) == y)[:10]
        worse[right] = np.roll(worse[right], 1, axis=1)  # 10 more examples wrong: +0.2 pp on 5,000
        # the paired differences: ten 1s among 5,000, standard deviation 0.04468, standard error 0.0632 pp;
        # at 90 % one-sided (z = 1.2816) the budget sees 0.0810 pp more
        assert runner.error(runner.reference.model, worse) == pytest.approx(runner.reference_error + 0.2 + margin,
                                                                            abs=2e-4)
