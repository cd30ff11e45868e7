"""Keras Tuner searches: spaces (an LC task among them), grid/random oracles, resume after a kill, an
interrupted ``--overwrite``, chief + workers, mirrored training, the best trial repeated from its command.

Search logic is tested in-process with a stand-in runner (no training), so that the oracles,
the resume path and the report are exercised in seconds; the distributed tests start real
processes on 127.0.0.1 with tiny trials. The subprocesses are started together (a fixture)
so that their TensorFlow start-ups overlap.
"""
import itertools
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kcompress.cli.main import main
from kcompress.tuning.search import build_tuner
from kcompress.tuning.space import grid, hyperparameters, parse_space, trial_value

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


def test_space_values_of_the_wrong_type_exit_2(capsys):
    assert main(["tune", "--out", "unused", "--space", "lr=a,b"]) == 2
    assert "--space 'lr=a,b': lr takes numbers, not a, b" in capsys.readouterr().err


TUNE_TINY = ["tune", "--model", "index64", "--data", "keys:uniform:600", "--epochs", "1", "--search", "grid",
        "--space", "loss=mse,lse"]


def test_interrupted_tune_overwrite_keeps_the_old_search(tmp_path, monkeypatch):
    from kcompress.tuning.trials import TrainTrial

    out = tmp_path / "search"
    assert main(TUNE_TINY + ["--space", "lr=1e-3", "--out", str(out)]) == 0
    before = sorted(p.name for p in out.iterdir())
    old_report = (out / "trials.md").read_text()
    run, calls = TrainTrial.run, []

    def killed_at_second(self, values, folder, **kw):
        calls.append(values)
        if len(calls) == 2:
            raise Killed()
        return run(self, values, folder, **kw)

    with monkeypatch.context() as m:
        m.setattr(TrainTrial, "run", killed_at_second)
        with pytest.raises(Killed):
            main(TUNE_TINY + ["--space", "lr=3e-3", "--out", str(out), "--overwrite"])
    assert sorted(p.name for p in out.iterdir()) == before and (out / "trials.md").read_text() == old_report
    assert json.loads((out / "search.json").read_text())["space"][-1] == "lr=1e-3"
    assert main(TUNE_TINY + ["--space", "lr=1e-3", "--out", str(out)]) == 0  # the old search still reports
    assert main(TUNE_TINY + ["--space", "lr=3e-3", "--out", str(out), "--overwrite"]) == 0  # resumes the new one
    assert json.loads((out / "search.json").read_text())["space"][-1] == "lr=3e-3"
    assert "--lr 0.003" in (out / "best_command.txt").read_text()
    assert sorted(os.listdir(tmp_path)) == ["search"]
    assert main(TUNE_TINY + ["--space", "lr=3e-3", "--out", str(out)]) == 0  # the swapped-in search reloads


TASK = "all:prune-l0:kappa=0.05"


@pytest.mark.parametrize("given", ["flag", "space", "yaml"])
def test_one_fixed_task_parses_as_one_text_value(tmp_path, given):
    items = {"flag": ["mu0=1e-4,1e-3"], "space": [f"task={TASK}", "mu0=1e-4,1e-3"]}.get(given)
    if given == "yaml":
        (tmp_path / "space.yaml").write_text(f"task: {TASK}\nmu0: [1.0e-4, 1.0e-3]\nmu_factor: '1.1:1.5:log'\n")
        items = [str(tmp_path / "space.yaml")]
    space = parse_space(items)
    assert space["mu0"].choices == (1e-4, 1e-3)
    if given != "flag":
        assert space["task"].choices == (TASK,) and not space["task"].is_range
    if given == "yaml":
        assert (space["mu_factor"].low, space["mu_factor"].high, space["mu_factor"].sampling) == (1.1, 1.5, "log")


def test_yaml_list_items_keep_their_commas(tmp_path):
    (tmp_path / "s.yaml").write_text('task: ["dense_1,dense_2:prune-l0:kappa=0.1", "all:quant:k=2"]\n')
    assert parse_space([str(tmp_path / "s.yaml")])["task"].choices == ("dense_1,dense_2:prune-l0:kappa=0.1",
                                                                        "all:quant:k=2")


def _kcompress():
    """The installed ``kcompress`` script (else the same entry point through this Python)."""
    return [shutil.which("kcompress")] if shutil.which("kcompress") else [sys.executable, "-m", "kcompress.cli.main"]


def test_a_searched_single_task_is_enough_for_the_runner(reference_dir):
    from kcompress.tuning.trials import CompressTrial

    trial = CompressTrial(reference_dir, "lc", base={"mu_steps": 3}, first={"task": TASK, "mu0": 1e-3})
    assert trial.max_budget() == 3 and trial.settings({"task": TASK}).task == (TASK,)


def test_lc_mu_grid_with_one_task_and_its_best_command_and_config(reference_dir, tmp_path, capsys):
    """The issue's command (2 μ0 × 1 factor to stay small); the best trial repeated exactly by
    its printed command run from another folder, and by ``compress --config best.yaml`` alone."""
    out = tmp_path / "search"
    argv = ["tune", "--from", str(reference_dir), "--method", "lc", "--task", TASK, "--search", "grid",
            "--space", "mu0=1e-4,1e-3", "--space", "mu_factor=1.5", "--mu-steps", "2", "--l-epochs", "1",
            "--no-multipliers", "--objective", "val_loss", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    trials = [json.loads((p / "model" / "run.json").read_text()) for p in sorted(out.glob("trial_*"))]
    assert sorted((t["settings"]["mu0"], t["settings"]["mu_factor"]) for t in trials) == [(1e-4, 1.5), (1e-3, 1.5)]
    assert all(t["settings"]["task"] == [TASK] and t["settings"]["multipliers"] is False for t in trials)
    best = json.loads((out / "best" / "run.json").read_text())
    words = shlex.split((out / "best_command.txt").read_text())
    assert words[:2] == ["kcompress", "compress"] and "--no-multipliers" in words and "False" not in words
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(_kcompress() + words[1:], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    again = json.loads(next(elsewhere.glob("models/*/run.json")).read_text())
    assert main(["compress", "--config", str(out / "best.yaml"), "--out", str(tmp_path / "from_yaml")]) == 0
    from_yaml = json.loads((tmp_path / "from_yaml" / "run.json").read_text())
    for run in (again, from_yaml):
        assert run["settings"] == best["settings"]
        assert run["metrics"]["test_error"] == best["metrics"]["test_error"]
