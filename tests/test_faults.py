"""Faults: a full disk or a read-only folder exits 2 with one line and leaves
nothing beside ``--out``; SIGTERM cleans up like Ctrl-C (exit 143); a run killed by SIGKILL or SIGTERM
at a seeded random moment and run again ends with one complete record and nothing beside ``--out``.
Right after a SIGTERM only a training run's checkpoint ``.NAME.backup/`` may stay beside ``--out``, as
after Ctrl-C (README: an interrupted training run resumes); the lock and the staging folder are gone.

The kill tests run the real CLI as a subprocess (``python -m kcompress.cli.main``: there is no
``python -m kcompress``) and rerun the same command in-process, which saves a TensorFlow import per
case; together they take about a minute on 2 cores, so their parameter lists stay short."""
import csv
import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kcompress.cli.main import main, sigterm_as_interrupt
from kcompress.core.objectives import ErrorFromAccuracy
from kcompress.errors import Terminated

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 12  # epochs take ~0.1-0.3 s: a kill soon after epoch 3 begins lands within training
TRAIN = ["train", "--hidden", "16", "--epochs", str(EPOCHS)]


def _beside(root):
    """What the run left under ``root`` (where ``--out`` is ``root/a/m``): relative paths, the parent
    ``a`` that the run created looked into."""
    found = []
    for name in sorted(os.listdir(root)):
        inside = sorted(os.listdir(root / name)) if name == "a" and (root / name).is_dir() else []
        found += [f"a/{n}" for n in inside] or [name]
    return found


def _history_lengths(out):
    return {k: len(v) for k, v in json.loads((out / "run.json").read_text())["history"].items()}


# ---------------------------------------------------------------- a full disk, a read-only folder


def _refused(code, path=None):
    return OSError(code, os.strerror(code), *([str(path)] if path else []))


def _tf_disk_full():
    from kcompress.backend import tf

    return tf.errors.ResourceExhaustedError(None, None, "/x/.m.backup/chief/ckpt-2.data-00000-of-00001.tempstate1; "
                                                        "No space left on device")


class _FailingEpoch(ErrorFromAccuracy):
    """ErrorFromAccuracy (which ``fit`` always adds), failing with ``error`` when the second epoch
    would begin, after the first checkpoint was written; remembers whether the backup was there then."""

    error, backup, seen = None, None, None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            type(self).seen = self.backup.is_dir()
            raise self.error


FAULTS = {
    "disk full while training": ("fit", lambda out: _refused(errno.ENOSPC), 2,
                                 "--out {out}: No space left on device"),
    "disk full in a TensorFlow checkpoint write": ("fit", lambda out: _tf_disk_full(), 2,
                                                   "--out {out}: No space left on device"),
    "read-only while saving": ("save", lambda out: _refused(errno.EROFS, out / "model.keras"), 2,
                               "{out}/model.keras: Read-only file system (--out {out})"),
    "an I/O error while training (not the user's)": ("fit", lambda out: _refused(errno.EIO), 1,
                                                     "internal error: OSError: [Errno 5] Input/output error"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failed_write_exits_with_one_line_and_leaves_nothing_beside_out(tmp_path, monkeypatch, capsys, fault):
    site, make, code, message = FAULTS[fault]
    out = tmp_path / "a" / "m"
    if site == "fit":
        monkeypatch.setattr(_FailingEpoch, "error", make(out))
        monkeypatch.setattr(_FailingEpoch, "backup", out.parent / ".m.backup")
        monkeypatch.setattr("kcompress.training.loop.ErrorFromAccuracy", _FailingEpoch)
    else:
        def save_model(model, folder):
            raise make(out)

        monkeypatch.setattr("kcompress.pipeline.save_model", save_model)
    assert main(TRAIN[:3] + ["--epochs", "2", "--out", str(out)]) == code
    err = capsys.readouterr().err.splitlines()
    assert err == [f"kcompress: {'error: ' if code == 2 else ''}{message.format(out=out)}"
                   + (" (run with --debug for the traceback)" if code == 1 else "")]
    if site == "fit":
        assert _FailingEpoch.seen  # the checkpoint existed when the run failed, and was removed
    assert os.listdir(tmp_path) == []  # no backup, no partial folder, no lock, not the parent it made


# ---------------------------------------------------------------- SIGTERM raised where C code loses it


def _swallowed():  # what C code that clears errors does (PyObject_HasAttr, seen: once in ~20 LC runs, exit 0)
    try:
        time.sleep(0.3)
    except BaseException:
        pass


def _mangled():  # what pybind11 did (seen: SystemError, then RuntimeError: exit 1, an "internal error")
    try:
        time.sleep(0.3)
    except BaseException:
        raise RuntimeError("pybind11::error_already_set called while Python error indicator not set")


def _swallowed_then_busy():
    _swallowed()
    for _ in range(100):  # the reminder stops this, well before its 10 s
        time.sleep(0.1)


def _slow_cleanup():
    try:
        time.sleep(0.3)
    finally:
        time.sleep(1.2)  # spans two reminders, which must not interrupt it
        _slow_cleanup.done = True


_slow_cleanup.done = False


@pytest.mark.parametrize("body", [_swallowed, _mangled, _swallowed_then_busy, _slow_cleanup], ids=lambda f: f.__name__[1:])
def test_a_sigterm_that_c_code_swallows_or_mangles_still_stops_the_command(body):
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
    start = time.monotonic()
    with pytest.raises(Terminated):
        with sigterm_as_interrupt():
            body()
    assert time.monotonic() - start < 3
    assert getattr(body, "done", True)
    assert signal.getsignal(signal.SIGTERM) is before and not Terminated.requested


# ---------------------------------------------------------------- killed at a random moment, run again


def _start(args, logs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    stdout, stderr = open(logs / "stdout", "w"), open(logs / "stderr", "w")
    return subprocess.Popen([sys.executable, "-m", "kcompress.cli.main", *args], stdout=stdout, stderr=stderr, env=env,
                            cwd=logs)


def _kill_at(proc, sig, reached, delay, logs, timeout=90):
    """Send ``sig`` to ``proc`` ``delay`` seconds after ``reached()`` first holds; returns the exit code."""
    deadline = time.monotonic() + timeout
    while not reached():
        assert proc.poll() is None, f"exited {proc.returncode} early: {(logs / 'stderr').read_text()[-2000:]}"
        assert time.monotonic() < deadline, "the moment to kill at never came"
        time.sleep(0.02)
    time.sleep(delay)
    assert proc.poll() is None, "finished before it could be killed: lengthen the run"
    proc.send_signal(sig)
    return proc.wait(timeout=60)


def _check_signal_exit(code, sig, logs):
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        err = (logs / "stderr").read_text()
        assert code == 143 and err.splitlines()[-1] == "kcompress: terminated", err[-2000:]


# (signal, the moment it is sent after, seed of the random delay): the start (lock taken, TensorFlow
# loading, the first epoch compiling: up to 3 s later) and after the first checkpoint.
TRAIN_KILLS = [(signal.SIGKILL, "Epoch 3/", 0), (signal.SIGTERM, "Epoch 3/", 1), (signal.SIGTERM, "lock", 2)]


@pytest.mark.parametrize("sig, moment, seed", TRAIN_KILLS, ids=lambda p: getattr(p, "name", str(p)))
def test_killed_train_reruns_into_one_record_and_leaves_nothing_beside_out(tmp_path, capsys, sig, moment, seed):
    root, logs = tmp_path / "w", tmp_path / "logs"
    root.mkdir(), logs.mkdir()
    out = root / "a" / "m"
    args = TRAIN + ["--out", str(out)]
    delay = random.Random(seed).uniform(0, 3.0 if moment == "lock" else 0.3)
    if moment == "lock":
        reached = (root / "a" / ".m.lock").exists
    else:
        reached = lambda: moment in (logs / "stdout").read_text()  # noqa: E731
    code = _kill_at(_start(args, logs), sig, reached, delay, logs)
    _check_signal_exit(code, sig, logs)
    assert f"Epoch {EPOCHS}/" not in (logs / "stdout").read_text(), "training ended before the kill: lengthen it"
    left = _beside(root)
    if sig == signal.SIGTERM:  # cleaned up at once; only the checkpoint stays, for the rerun to resume from
        assert set(left) <= {"a/.m.backup"}, left
        assert moment != "Epoch 3/" or left == ["a/.m.backup"], "the checkpoint of epoch 1 was lost"
    state = root / "a" / ".m.backup" / "kcompress-state.json"
    saved = json.loads(state.read_text())["epochs"] if state.is_file() else []

    capsys.readouterr()
    assert main(args) == 0
    printed = [int(n) for n in re.findall(r"^Epoch (\d+)/%d$" % EPOCHS, capsys.readouterr().out, re.M)]
    done = printed[0] - 1  # the epochs restored from the checkpoint
    assert printed == list(range(done + 1, EPOCHS + 1))  # the rest, each once
    assert saved[:done] == list(range(done))  # restored epochs were all checkpointed, none twice
    if moment == "Epoch 3/":
        assert done >= 1, "the rerun did not resume from the checkpoint"
    assert set(_history_lengths(out).values()) == {EPOCHS}  # no gap, no duplicate epoch in run.json
    assert _beside(root) == ["a/m"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref"
    assert main(["train", "--hidden", "16", "--epochs", "1", "--out", str(out)]) == 0
    return out


MU_STEPS, L_EPOCHS = 2, 1
LC_KILLS = [(signal.SIGTERM, 0)]  # the heaviest case: keep the list short


@pytest.mark.parametrize("sig, seed", LC_KILLS, ids=lambda p: getattr(p, "name", str(p)))
def test_killed_lc_compression_reruns_whole_and_leaves_nothing_beside_out(tmp_path, capsys, reference, sig, seed):
    root, logs = tmp_path / "w", tmp_path / "logs"
    root.mkdir(), logs.mkdir()
    out = root / "a" / "m"
    args = ["compress", "--from", str(reference), "--method", "lc", "--task", "all:prune-l0:kappa=0.05",
            "--mu-steps", str(MU_STEPS), "--l-epochs", str(L_EPOCHS), "--out", str(out)]
    staging = lambda: (root / "a").is_dir() and any(n.startswith(".m.partial-") for n in os.listdir(root / "a"))  # noqa: E731
    code = _kill_at(_start(args, logs), sig, staging, random.Random(seed).uniform(0, 2.0), logs)
    _check_signal_exit(code, sig, logs)
    if sig == signal.SIGTERM:
        assert _beside(root) == []  # no lock, no partial folder, not the parent it made
    assert main(args) == 0
    assert set(_history_lengths(out).values()) == {MU_STEPS * L_EPOCHS}
    assert _beside(root) == ["a/m"]


def _staging(root):
    return lambda: (root / "a").is_dir() and any(n.startswith(".m.partial-") for n in os.listdir(root / "a"))


def _first_trial(root):
    return lambda: (root / "a" / "m" / "trial_0").is_dir()


def _trials_once(out):
    """Each trial of the search's report once, every one completed."""
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    ids = [r.get("trial") or r.get("trial_id") for r in rows]
    return len(ids) == len(set(ids)) and all(r.get("status", "COMPLETED").upper() == "COMPLETED" for r in rows), rows


# (what, its arguments after --out, the moment, signal, seed of the delay, how long after the moment at most)
OTHER_KILLS = {
    "export": (lambda ref: ["export", "--from", str(ref), "--tflite-modes", "float32,int8"], _staging, signal.SIGTERM,
               3, 1.5),
    "tune": (lambda ref: ["tune", "--hidden", "16", "--epochs", "1", "--search", "grid", "--space", "lr=0.01,0.1",
                          "--space", "batch_size=128,256"], _first_trial, signal.SIGKILL, 4, 2.0),
    "auto": (lambda ref: ["compress", "--from", str(ref), "--method", "auto", "--search", "grid", "--methods", "prune",
                          "--space", "prune.epochs=1", "--space", "prune.sparsity=0.5,0.7,0.9",
                          "--max-error-increase", "50"], _first_trial, signal.SIGTERM, 5, 2.0),
}


@pytest.mark.parametrize("what", list(OTHER_KILLS))
def test_killed_export_tune_and_auto_rerun_whole_and_leave_nothing_beside_out(tmp_path, capsys, reference, what):
    make, moment, sig, seed, spread = OTHER_KILLS[what]
    root, logs = tmp_path / "w", tmp_path / "logs"
    root.mkdir(), logs.mkdir()
    out = root / "a" / "m"
    args = make(reference) + ["--out", str(out)]
    code = _kill_at(_start(args, logs), sig, moment(root), random.Random(seed).uniform(0, spread), logs)
    _check_signal_exit(code, sig, logs)
    if sig == signal.SIGTERM and what == "export":
        assert _beside(root) == []  # no lock, no partial folder, not the parent it made
    assert main(args) == 0
    if what == "export":
        report = json.loads((out / "report.json").read_text())
        assert report["passed"] and {f["variant"] for f in report["files"]} == {"tflite-float32", "tflite-int8", "onnx"}
    else:
        once, rows = _trials_once(out)
        assert once and len(rows) == (4 if what == "tune" else 3), rows
    assert _beside(root) == ["a/m"]
