"""The command line: bad input exits 2 with one line, no traceback, nothing written."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kcompress.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def _fails_cleanly(capsys, argv, needle, out=None):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and needle in err, err
    if out is not None:
        assert not Path(out).exists() and not list(Path(out).parent.glob(f".{Path(out).name}.partial-*"))


@pytest.fixture
def bad_npz(tmp_path):
    def make(**arrays):
        p = tmp_path / f"bad{len(list(tmp_path.glob('bad*.npz')))}.npz"
        np.savez(p, **arrays)
        return str(p)
    return make


def test_train_bad_input(capsys, tmp_path, bad_npz):
    out = str(tmp_path / "m")
    cases = [
        (["--model", "vgg"], "unknown --model 'vgg'"),
        (["--data", "imagenet"], "unknown --data 'imagenet'"),
        (["--data", str(tmp_path / "missing.npz")], "file not found"),
        (["--data", bad_npz(x_train=np.zeros((3, 2)))], "lacks array"),
        (["--data", bad_npz(x_train=np.zeros((3, 2)), y_train=np.zeros(2, int), x_test=np.zeros((1, 2)), y_test=np.zeros(1, int))], "has 3 rows but y_train has 2"),
        (["--data", bad_npz(x_train=np.zeros((3, 2)), y_train=np.array([0, 1, 2]), x_test=np.zeros((1, 2)), y_test=np.array([7]))], "out of range"),
        (["--model", "lenet5", "--data", "keys:uniform:100"], "needs image inputs"),
        (["--epochs", "0"], "--epochs must be positive"),
        (["--lr", "-1"], "--lr must be positive"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--hidden", "3x"], "--hidden"),
        (["--epochs", "ten"], "--epochs 'ten': expected int"),
    ]
    for extra, needle in cases:
        _fails_cleanly(capsys, ["train", "--out", out, *extra], needle, out)


def test_existing_out_and_bad_model_directories(capsys, tmp_path, reference_dir):
    _fails_cleanly(capsys, ["train", "--out", str(reference_dir)], "already exists (use --overwrite")
    _fails_cleanly(capsys, ["evaluate", "--from", str(tmp_path)], "not a model directory")
    broken = tmp_path / "broken"
    shutil.copytree(reference_dir, broken)
    (broken / "model.keras").write_bytes(b"garbage")
    _fails_cleanly(capsys, ["evaluate", "--from", str(broken)], "cannot load model.keras")
    _fails_cleanly(capsys, ["export", "--from", str(reference_dir), "--formats", "coreml", "--out", str(tmp_path / "e")],
                   "--formats: unknown coreml", tmp_path / "e")
    _fails_cleanly(capsys, ["evaluate", "--from", str(reference_dir), "--data", "keys:uniform:50"], "do not fit the model's input")


def test_config_file_gives_flags_and_rejects_unknown_keys(capsys, tmp_path):
    from kcompress.cli.main import parse

    conf = tmp_path / "c.yaml"
    conf.write_text("epochs: 7\nbatch-size: full\n")
    command, values = parse(["train", "--out", "x", "--config", str(conf), "--epochs", "9"])
    assert command == "train" and str(values["epochs"]) == "9" and values["batch_size"] == "full"
    conf.write_text("epoch: 7\n")
    _fails_cleanly(capsys, ["train", "--out", "x", "--config", str(conf)], "unknown setting(s) epoch")


@pytest.mark.parametrize("line, needle", [
    ("seed: -1", "--seed: must be in 0..4294967295"), ("seed: ''", "--seed: expected an integer"),
    ("seed: true", "--seed: expected one value"), ("method: [prune, lc]", "--method: expected one value"),
    ("out: {a: 1}", "--out: expected one value"), ("overwrite: 3", "--overwrite: expected true or false"),
    ("method: 42", "unknown --method '42'"),
])
def test_config_values_of_flags_outside_the_settings_are_checked_like_flags(capsys, tmp_path, line, needle):
    conf = tmp_path / "c.yaml"
    conf.write_text(line + "\n")
    _fails_cleanly(capsys, ["compress", "--from", "m", "--out", str(tmp_path / "o"), "--config", str(conf)], needle,
                   out=tmp_path / "o")


def test_console_entry_point_exits_2_on_bad_input(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--epochs", "-3", "--out", str(tmp_path / "m")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.startswith("kcompress")]
    assert lines == ["kcompress: error: --epochs must be positive, got -3"] and "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists()


def test_help_offers_comma_list_sweeps_only_where_the_command_expands_them(capsys):
    """compress sweeps a comma list; train takes one value per flag, so its help promises none."""
    for command, promised in (("train", False), ("compress", True)):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert ("a comma list sweeps" in " ".join(capsys.readouterr().out.split())) is promised
