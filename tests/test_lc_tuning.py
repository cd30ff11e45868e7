"""LC searches: a μ grid with one fixed task, and the best trial's
``best_command.txt`` and ``best.yaml`` repeating it exactly from anywhere."""
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kcompress.cli.main import main
from kcompress.tuning.space import parse_space

ROOT = Path(__file__).resolve().parents[1]
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
