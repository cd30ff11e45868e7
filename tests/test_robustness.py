"""Bad input and interrupted work: data validation, resume, one writer per --out,
an interrupted ``tune --overwrite``, and input errors that used to be internal errors."""
import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kcompress import api
from kcompress.backend import keras
from kcompress.cli.main import main
from kcompress.core.data import load_dataset
from kcompress.core.keys import generate_keys, read_keys_file
from kcompress.errors import UsageError
from kcompress.core.modeldir import out_lock, read_run, staged_dir
from kcompress.training.config import TrainConfig
from kcompress.training.loop import fit
from kcompress.core.zoo import build_model

ROOT = Path(__file__).resolve().parents[1]


def _npz(tmp_path, **arrays):
    base = dict(x_train=np.random.default_rng(0).random((6, 3)), y_train=np.array([0, 1, 0, 1, 0, 1]),
                x_test=np.ones((2, 3)), y_test=np.array([0, 1]))
    p = tmp_path / "d.npz"
    np.savez(p, **{**base, **arrays})
    return str(p)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("arrays, message", [
    (dict(x_train=np.full((6, 3), NAN)), r"x_train holds 18 value\(s\) of 18 that are not finite"),
    (dict(x_test=np.array([[1.0, NAN, 1.0], [1.0, 1.0, 1.0]])), r"x_test holds 1 value\(s\) of 6 that are not finite"),
    (dict(x_train=np.array([[INF, 0, 0]] + [[0, 0, 0]] * 5)), r"x_train holds 1 value\(s\) of 18 that are not finite"),
    (dict(x_val=np.full((2, 3), NAN), y_val=np.array([0, 1])), r"x_val holds 6 value\(s\) of 6 that are not finite"),
    (dict(y_train=np.array([0.5, NAN, 1, 2, 3, 4]), y_test=np.array([0.5, 1.5])), r"y_train holds 1 value\(s\) of 6 that are not finite"),
    (dict(y_train=np.zeros(6, int), y_test=np.zeros(2, int)), "only class 0: a classifier needs at least 2"),
    (dict(y_train=np.array([0.5, 1.5, 0.5, 1.5, 0.5, 1.5])), "y_test holds integer class labels .* y_train holds float"),
    (dict(y_test=np.array([0.0, 1.0])), "y_test holds float targets .* y_train holds integer"),
    (dict(y_train=np.array(list("abcabc"))), "y_train has non-numeric dtype"),
])
def test_each_validation_rule_refuses_bad_npz_data(tmp_path, arrays, message):
    with pytest.raises(UsageError, match=message):
        load_dataset(_npz(tmp_path, **arrays))


def test_bad_data_exits_2_naming_the_file_and_array(tmp_path, capsys):
    path = _npz(tmp_path, x_train=np.full((6, 3), NAN))
    assert main(["train", "--data", path, "--out", str(tmp_path / "m"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and path in err and "x_train holds 18 value(s) of 18 that are not finite" in err
    assert not (tmp_path / "m").exists() and os.listdir(tmp_path) == ["d.npz"]


def test_unsorted_or_repeated_keys_are_fixed_with_one_notice_or_refused(tmp_path, capsys):
    keys = generate_keys("uniform", 50, seed=2)
    path = tmp_path / "k.txt"
    path.write_text("\n".join(str(int(k)) for k in [*keys[::-1], keys[0], keys[1]]))  # 49 descents, 2 repeats
    np.testing.assert_array_equal(read_keys_file(str(path)), keys)
    load_dataset(f"keys-file:{path}")
    err = capsys.readouterr().err
    assert err.count("notice") == 1 and "49 key(s) out of order and 2 repeated" in err and "to 50 keys" in err
    with pytest.raises(UsageError, match="49 key.* out of order and 2 repeated.*--strict-keys"):
        load_dataset(f"keys-file:{path}", strict_keys=True)
    assert main(["train", "--model", "index64", "--data", f"keys-file:{path}", "--strict-keys",
                 "--out", str(tmp_path / "m")]) == 2
    (tmp_path / "ok.txt").write_text("\n".join(str(int(k)) for k in keys))
    load_dataset(f"keys-file:{tmp_path / 'ok.txt'}", strict_keys=True)
    assert "notice" not in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "holds a JSON list, not a kcompress run record"),
    ("{}", "has no settings"),
])
def test_run_json_that_is_not_a_run_record_is_a_usage_error(tmp_path, content, message):
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(UsageError, match=message) as e:
        read_run(tmp_path)
    assert str(tmp_path / "run.json") in str(e.value)


def test_run_json_without_a_data_spec_says_so(tmp_path, capsys):
    model = build_model("lenet300", (4,), 2, hidden=(3,))
    model.save(tmp_path / "model.keras")
    (tmp_path / "run.json").write_text(json.dumps({"settings": {"model": "lenet300"}}))
    assert main(["evaluate", "--from", str(tmp_path)]) == 2
    assert "does not say which data the model was made with (no data_spec); give --data" in capsys.readouterr().err


def test_space_values_of_the_wrong_type_exit_2(capsys):
    assert main(["tune", "--out", "unused", "--space", "lr=a,b"]) == 2
    assert "--space 'lr=a,b': lr takes numbers, not a, b" in capsys.readouterr().err


# ---------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def small_mnist():
    ds = load_dataset("mnist-sample", 0.1)
    return replace(ds, x_train=ds.x_train[:600], y_train=ds.y_train[:600], x_test=ds.x_test[:200], y_test=ds.y_test[:200])


class _Kill(keras.callbacks.Callback):
    """Raises KeyboardInterrupt when epoch ``at`` would begin (``at`` epochs completed)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(float(logs["loss"]))

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt


def _net(ds, width=16):
    return build_model("lenet300", ds.input_shape, 10, hidden=(width,))


def test_fit_resumed_after_a_kill_returns_the_whole_history(small_mnist, tmp_path):
    cfg, backup = TrainConfig(epochs=5, verbose=0), tmp_path / "backup"
    kill = _Kill(at=3)
    with pytest.raises(KeyboardInterrupt):
        fit(_net(small_mnist), small_mnist, cfg, callbacks=[kill], backup_dir=backup, backup_interval=0)
    history = fit(_net(small_mnist), small_mnist, cfg, backup_dir=backup, backup_interval=0)
    assert history.resumed_at == 3 and len(history["loss"]) == 5 and len(history["val_error"]) == 5
    assert history["loss"][:3] == pytest.approx(kill.seen)
    assert history.seconds > 0 and not backup.exists()


def test_the_first_epoch_is_checkpointed_whatever_the_interval(small_mnist, tmp_path):
    cfg, backup = TrainConfig(epochs=3, verbose=0), tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        fit(_net(small_mnist), small_mnist, cfg, callbacks=[_Kill(at=1)], backup_dir=backup, backup_interval=3600)
    history = fit(_net(small_mnist), small_mnist, cfg, backup_dir=backup, backup_interval=3600)
    assert history.resumed_at == 1 and len(history["loss"]) == 3


@pytest.mark.parametrize("change", [dict(cfg=dict(lr=0.01)), dict(width=24), dict(run_key={"seed": 1})])
def test_a_checkpoint_of_other_settings_is_discarded_not_restored(small_mnist, tmp_path, capsys, change):
    cfg, backup = TrainConfig(epochs=3, verbose=0), tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        fit(_net(small_mnist), small_mnist, cfg, callbacks=[_Kill(at=2)], backup_dir=backup, backup_interval=0,
            run_key={"seed": 0})
    capsys.readouterr()
    history = fit(_net(small_mnist, change.get("width", 16)), small_mnist, replace(cfg, **change.get("cfg", {})),
                  backup_dir=backup, backup_interval=0, run_key=change.get("run_key", {"seed": 0}))
    assert history.resumed_at is None and len(history["loss"]) == 3
    assert "checkpoint of a run with other settings or data; starting afresh" in capsys.readouterr().err


class _KillingError(keras.callbacks.Callback):
    """Stands in for ErrorFromAccuracy in api.train, killing the run when epoch 2 would begin."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt


def test_train_resumes_into_one_record_and_leaves_nothing_beside_out(tmp_path, monkeypatch, capsys):
    args = ["train", "--hidden", "16", "--epochs", "4", "--out", str(tmp_path / "m")]
    with monkeypatch.context() as m:
        m.setattr("kcompress.training.loop.ErrorFromAccuracy", _KillingError)
        assert main(args) == 130
    assert sorted(os.listdir(tmp_path)) == [".m.backup"]
    assert main(args) == 0
    run = json.loads((tmp_path / "m" / "run.json").read_text())
    assert len(run["history"]["loss"]) == 4 and len(run["history"]["val_error"]) == 4
    assert run["train_seconds"] > 0 and os.listdir(tmp_path) == ["m"]
    with monkeypatch.context() as m:  # killed again, then rerun with another --hidden: a fresh run, no crash
        m.setattr("kcompress.training.loop.ErrorFromAccuracy", _KillingError)
        assert main(args + ["--overwrite"]) == 130
    capsys.readouterr()
    assert main(args[:2] + ["32"] + args[3:] + ["--overwrite"]) == 0
    assert "starting afresh" in capsys.readouterr().err
    run = json.loads((tmp_path / "m" / "run.json").read_text())
    assert run["settings"]["hidden"] == [32] and len(run["history"]["loss"]) == 4
    assert os.listdir(tmp_path) == ["m"]


# ---------------------------------------------------------------- one writer per --out


def _holder(out):
    """A second process that holds the lock of ``out`` until it is killed."""
    code = ("import sys, time\nfrom kcompress.core.modeldir import out_lock\n"
            f"with out_lock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_exits_2_at_once_and_a_dead_ones_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / "m"
    proc = _holder(out)
    try:
        assert main(["train", "--epochs", "1", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"--out {out} is being written by pid {proc.pid}" in err and "-c" in err
        with pytest.raises(UsageError, match=f"pid {proc.pid}"):
            with staged_dir(out):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (tmp_path / ".m.lock").exists()  # left by the killed process
    with out_lock(out):
        assert f"pid {os.getpid()}" in (tmp_path / ".m.lock").read_text()
    assert f"lock {tmp_path / '.m.lock'} of pid {proc.pid}" in capsys.readouterr().err
    assert not (tmp_path / ".m.lock").exists()


def test_staging_removes_only_partial_folders_of_dead_processes(tmp_path):
    import platform

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = platform.node()
    live_partial = tmp_path / f".m.partial-{host}~{os.getppid()}-abc"
    dead_partial = tmp_path / f".m.partial-{host}~{dead.pid}-abc"
    live_partial.mkdir()
    dead_partial.mkdir()
    with staged_dir(tmp_path / "m") as tmp:
        (tmp / "f").write_text("x")
    assert live_partial.exists() and not dead_partial.exists() and (tmp_path / "m" / "f").exists()


# ---------------------------------------------------------------- tune --overwrite


class Killed(BaseException):
    """Stands in for SIGKILL: Keras Tuner catches Exception, not this."""


TINY = ["tune", "--model", "index64", "--data", "keys:uniform:600", "--epochs", "1", "--search", "grid",
        "--space", "loss=mse,lse"]


def test_interrupted_tune_overwrite_keeps_the_old_search(tmp_path, monkeypatch):
    from kcompress.tuning.trials import TrainTrial

    out = tmp_path / "search"
    assert main(TINY + ["--space", "lr=1e-3", "--out", str(out)]) == 0
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
            main(TINY + ["--space", "lr=3e-3", "--out", str(out), "--overwrite"])
    assert sorted(p.name for p in out.iterdir()) == before and (out / "trials.md").read_text() == old_report
    assert json.loads((out / "search.json").read_text())["space"][-1] == "lr=1e-3"
    assert main(TINY + ["--space", "lr=1e-3", "--out", str(out)]) == 0  # the old search still reports
    assert main(TINY + ["--space", "lr=3e-3", "--out", str(out), "--overwrite"]) == 0  # resumes the new one
    assert json.loads((out / "search.json").read_text())["space"][-1] == "lr=3e-3"
    assert "--lr 0.003" in (out / "best_command.txt").read_text()
    assert sorted(os.listdir(tmp_path)) == ["search"]
    assert main(TINY + ["--space", "lr=3e-3", "--out", str(out)]) == 0  # the swapped-in search reloads
