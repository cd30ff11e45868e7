"""Keras Tuner searches: spaces, grid/random oracles, resume after a kill, chief + workers, mirrored training.

Search logic is tested in-process with a stand-in runner (no training), so that the oracles,
the resume path and the report are exercised in seconds; the distributed tests start real
processes on 127.0.0.1 with tiny trials. The subprocesses are started together (a fixture)
so that their TensorFlow start-ups overlap.
"""
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kcompress.cli.main import main
from kcompress.tuning.space import grid, hyperparameters, parse_space, trial_value
from kcompress.tuning.search import build_tuner

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "index64", "--data", "keys:uniform:600", "--epochs", "1", "--search", "grid",
        "--space", "lr=1e-3,3e-2", "--space", "loss=mse,lse"]


class Killed(BaseException):
    """Stands in for SIGKILL: Keras Tuner catches Exception, not this."""


class FakeRunner:
    """A runner whose objective is a known function of the values; optionally 'killed' at one call."""

    task = "regression"
    searchable = ("lr", "loss", "batch_size", "momentum", "epochs", "gamma")
    budget, resumable = "epochs", True

    def __init__(self, kill_at=None):
        self.calls, self.kill_at = [], kill_at

    def max_budget(self):
        return 3

    def run(self, values, folder, **_):
        self.calls.append(dict(values))
        if len(self.calls) == self.kill_at:
            raise Killed()
        lr = float(values.get("lr", 1e-3))
        return {"max_error": math.nan if lr >= 0.1 else 1.0 / lr + (values.get("loss") == "lse"), "seconds": 0.0}

    def config(self, values):
        return values

    def command(self, values, out):
        return ["python", "cli.py", "train", "--out", str(out)]


def _search(tmp, space, runner, search="grid", max_trials=10):
    parsed = parse_space(space)
    tuner = build_tuner(search, "max_error", hyperparameters(parsed), grid(parsed) if search == "grid" else None,
                        runner, max_trials, Path(tmp), seed=0)
    tuner.search(verbose=0)
    return tuner


GRID = ["loss=mse,lse", "lr=1e-3,1e-2,1e-1", "batch_size=64,256"]


def test_grid_enumerates_exactly_the_product_and_nan_trials_fail(tmp_path):
    from kcompress.tuning.tuner import trial_rows
    from kcompress.tuning.report import write_report

    runner = FakeRunner()
    tuner = _search(tmp_path / "g", GRID, runner)
    rows = trial_rows(tuner.oracle)
    product = list(itertools.product(["mse", "lse"], [1e-3, 1e-2, 1e-1], [64, 256]))
    assert [(r["values"]["loss"], r["values"]["lr"], r["values"]["batch_size"]) for r in rows] == product
    assert len(runner.calls) == 12
    assert {r["status"] for r in rows if r["values"]["lr"] == 0.1} == {"FAILED"}  # NaN objective
    assert {r["status"] for r in rows if r["values"]["lr"] < 0.1} == {"COMPLETED"}
    report = write_report(tmp_path / "g", rows, parse_space(GRID), runner, "max_error", "grid")
    assert report["best"]["values"] == {"loss": "mse", "lr": 0.01, "batch_size": 64}
    table = (tmp_path / "g" / "trials.md").read_text().splitlines()
    assert table[2].split("|")[2].strip() == "completed" and table[-1].split("|")[2].strip() == "failed"
    assert (tmp_path / "g" / "grid.md").read_text().count("## loss=") == 2
    assert (tmp_path / "g" / "heatmap_lr_batch_size.png").is_file() and (tmp_path / "g" / "objective.png").is_file()


def test_random_search_respects_bounds(tmp_path):
    space = ["lr=1e-5:1e-1:log", "momentum=0.5:0.99", "batch_size=64,128,full", "epochs=1:3"]
    runner = FakeRunner()
    _search(tmp_path / "r", space, runner, search="random", max_trials=12)
    assert len(runner.calls) == 12
    for v in runner.calls:
        assert 1e-5 <= v["lr"] <= 1e-1 and 0.5 <= v["momentum"] <= 0.99
        assert trial_value(v["batch_size"]) in (64, 128, "full") and v["epochs"] in (1, 2, 3)
    lrs = sorted(v["lr"] for v in runner.calls)
    assert lrs[0] < 1e-3  # log sampling reaches the low decades


def test_hyperband_trains_in_rounds_continuing_earlier_trials(tmp_path):
    runner = FakeRunner()
    seen = []
    runner.run = lambda values, folder, **kw: seen.append((values["epochs"], kw)) or FakeRunner.run(runner, values, folder)
    _search(tmp_path / "h", ["lr=1e-4:1e-2:log"], runner, search="hyperband")
    continued = [(epochs, kw) for epochs, kw in seen if kw.get("warm_start")]
    assert continued and all(Path(kw["warm_start"]).is_dir() for _, kw in continued)
    assert max(epochs for epochs, _ in seen) == 3  # max_epochs = --epochs
    assert all(epochs < 3 for epochs, _ in continued)  # a continued trial trains only the rest of its budget


def test_killed_grid_search_resumes_without_redoing_or_losing_trials(tmp_path):
    from kcompress.tuning.tuner import trial_rows

    space = ["lr=1e-4,1e-3,1e-2", "loss=mse,lse"]
    first = FakeRunner(kill_at=4)
    with pytest.raises(Killed):
        _search(tmp_path / "k", space, first)
    second = FakeRunner()
    tuner = _search(tmp_path / "k", space, second)
    # the interrupted trial runs again, the three finished ones do not
    assert second.calls[0] == first.calls[3] and first.calls[3] not in first.calls[:3]
    assert len(second.calls) == 3 and not any(c in first.calls[:3] for c in second.calls)
    rows = trial_rows(tuner.oracle)
    assert sorted(tuple(r["values"].values()) for r in rows) == sorted(tuple(g.values()) for g in grid(parse_space(space)))
    assert all(r["status"] == "COMPLETED" for r in rows) and len(rows) == 6


@pytest.mark.parametrize("space, reason", [
    ("lr=", "no values after '='"),
    ("momentum=0.9:0.5", "LOW must be below HIGH"),
    ("lr=abc:1", "range bounds must be numbers"),
    ("lr=1e-3,1e-3", "repeated values"),
    ("widths=1,2", "widths cannot be searched"),
    ("lr=-1,1e-3", "--lr must be positive"),
    ("momentum=0.5:0.99", "a grid search needs a list or a stepped range"),
])
def test_bad_space_exits_2_with_the_reason(tmp_path, capsys, space, reason):
    argv = ["tune", "--model", "index64", "--data", "keys:uniform:300", "--search", "grid", "--space", space,
            "--out", str(tmp_path / "bad")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert reason in err and len(err.splitlines()) == 1


MIRRORED = """
import json, os, sys
os.environ["KCOMPRESS_CPU_DEVICES"] = "2"
from kcompress import api
from kcompress.training import distribute
assert len(distribute.make_strategy("mirrored").extended.worker_devices) == 2
out = {s: api.train(os.path.join(sys.argv[1], s), model="index64", data="keys:uniform:600", epochs=2,
                    strategy=s, verbose=0)["metrics"] for s in ("mirrored", "none")}
print(json.dumps(out))
"""


@pytest.fixture(scope="module", autouse=True)
def processes(tmp_path_factory):
    """2 workers of a 4-trial grid and a mirrored-vs-single training run, started before the first
    test so that their TensorFlow start-ups overlap the in-process tests (the workers wait for
    the chief, which runs in-process in the last tests); :func:`_results` collects them."""
    tmp = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    tune = [sys.executable, "cli.py", "tune", *TINY, "--out", str(tmp / "search")]
    commands = {"w1": tune + ["--worker", "127.0.0.1:18763", "--tuner-id", "w1"],
                "w2": tune + ["--worker", "127.0.0.1:18763", "--tuner-id", "w2"],
                "mirrored": [sys.executable, "-c", MIRRORED, str(tmp / "mirror")]}
    procs = {k: subprocess.Popen(c, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for k, c in commands.items()}
    yield tmp, procs, {}
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.communicate()


def _results(processes):
    """``{name: (exit code, output)}`` of every process, waiting for them once."""
    tmp, procs, done = processes
    for name, p in procs.items():
        if name not in done:
            out = p.communicate(timeout=240)[0]
            done[name] = (p.returncode, out)
    return tmp, done


def test_chief_and_two_workers_run_every_trial_once(processes):
    tmp = processes[0]
    assert main(["tune", *TINY, "--out", str(tmp / "search"), "--chief", "127.0.0.1:18763"]) == 0
    _, results = _results(processes)
    for name in ("w1", "w2"):
        assert results[name][0] == 0, results[name][1][-2000:]
    done = [line.split()[1].split("/")[0] for name in ("w1", "w2")
            for line in results[name][1].splitlines() if line.startswith("trial ")]
    assert sorted(done) == ["0", "1", "2", "3"]  # each trial once, over both workers
    assert all(any(line.startswith("trial ") for line in results[n][1].splitlines()) for n in ("w1", "w2"))
    rows = list((tmp / "search" / "trials.csv").read_text().splitlines())[1:]
    assert len(rows) == 4 and all(",completed," in r for r in rows)
    assert (tmp / "search" / "best" / "model.keras").is_file() and (tmp / "search" / "heatmap_lr_loss.png").is_file()
    best = json.loads((tmp / "search" / "best" / "run.json").read_text())
    assert best["metrics"]["max_error"] == pytest.approx(float(rows[0].split(",")[4]))


def test_mirrored_on_two_logical_cpus_matches_single_device(processes):
    _, results = _results(processes)
    code, out = results["mirrored"]
    assert code == 0, out[-2000:]
    metrics = json.loads(out.strip().splitlines()[-1])
    for key in ("max_error", "mae"):
        assert metrics["mirrored"][key] == pytest.approx(metrics["none"][key], rel=1e-3)
