"""Resumable training: one run across kills, or a fresh one when the command changed.

:class:`IntervalBackupAndRestore` is Keras' BackupAndRestore plus what makes a resumed run
the same run: a first checkpoint after the first epoch (then one at an epoch's end once
``interval`` seconds have passed), a fingerprint of the settings and data that discards the
checkpoint of another command instead of restoring it (restoring mixed two runs in one
record, or crashed on other shapes), and the history and training seconds of the
checkpointed epochs, saved beside the checkpoint so that :meth:`~IntervalBackupAndRestore.whole`
returns the whole run's. The backup folder is removed when training ends, and by
:meth:`~IntervalBackupAndRestore.discard` when it fails; a kill (SIGKILL) or an interrupt (Ctrl-C,
SIGTERM) keeps it for the rerun.
"""
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from kcompress.backend import keras
from kcompress.core.data import digest

STATE_FILE = "kcompress-state.json"


class FitHistory(dict):
    """Per-epoch history (metric -> list), plus ``seconds`` of training across resumes,
    ``resumed_at``: the epoch a resumed run went on from (``None`` for a fresh run), and
    ``execution``: the path that ran (steps per call, XLA; see :mod:`kcompress.training.execution`)."""

    def __init__(self, history, seconds, resumed_at=None, execution=None):
        super().__init__(history)
        self.seconds = float(seconds)
        self.resumed_at = resumed_at
        self.execution = dict(execution or {})


def fingerprint(model, data, cfg, initial_epoch=0, extra=None):
    """A digest of what decides a run: weight shapes, training settings (not verbosity or step curves), the
    data's arrays, the first epoch and the caller's ``extra`` (e.g. the seed and command)."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("verbose", "curve_every")}
    spec = {"weights": [list(w.shape) for w in model.weights], "settings": settings, "data": digest(data),
            "initial_epoch": int(initial_epoch), "extra": extra}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


class IntervalBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, checkpointing after the first epoch and then at an epoch's end
    once ``interval`` seconds have passed since the last checkpoint.

    A checkpoint per epoch costs ~25 ms for LeNet-300-100, about 5 % of a half-second epoch;
    with the interval a kill loses at most one epoch or ``interval`` seconds, whichever is
    longer, and the overhead stays negligible whatever the epoch length (``interval=0``:
    every epoch). ``key`` is the run's :func:`fingerprint`.
    """

    def __init__(self, backup_dir, interval=10.0, key=""):
        self.folder, self.key, self.interval = Path(backup_dir), key, float(interval)
        self.saved = _read_state(self.folder, key)
        super().__init__(str(backup_dir), delete_checkpoint=True)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        done = int(keras.backend.get_value(self._training_state._ckpt_saved_epoch)) + 1  # 0: nothing restored
        keep = [i for i, e in enumerate(self.saved["epochs"]) if e < done]
        self.epochs = [self.saved["epochs"][i] for i in keep]
        self.history = {k: [v[i] for i in keep] for k, v in self.saved["history"].items()}
        self.elapsed = [self.saved["elapsed"][i] for i in keep]
        self.restored, self.done = len(keep), done
        self._prior = self.elapsed[-1] if keep else 0.0
        self._start = self._last = time.perf_counter()
        self._first = True

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.epochs.append(int(epoch))
        self.elapsed.append(self._prior + now - self._start)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))
        if self._first or now - self._last >= self.interval:
            _write_state(self.folder, dict(key=self.key, epochs=self.epochs, history=self.history, elapsed=self.elapsed))
            self._backup(epoch=epoch)  # after the state: a kill in between leaves the state one epoch ahead, trimmed
            self._first, self._last = False, time.perf_counter()

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        shutil.rmtree(self.folder, ignore_errors=True)

    def discard(self):
        """Remove the backup folder: the run failed (a full disk, a bad step), and a rerun of a failed
        command should start afresh rather than resume into the same failure."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def whole(self, history, seconds):
        """``history`` and ``seconds`` of this ``fit`` call, preceded by the restored epochs'."""
        merged = {k: self.history.get(k, [])[: self.restored] + list(v) for k, v in history.items()}
        return FitHistory(merged, self._prior + seconds, self.done if self.restored else None)


def _read_state(folder, key):
    """The saved epochs of the run ``key``; a checkpoint of another run is deleted with a notice."""
    empty = dict(epochs=[], history={}, elapsed=[])
    if not folder.is_dir() or not any(folder.iterdir()):
        return empty
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        if isinstance(state, dict) and state.get("key") == key:
            return {k: state[k] for k in empty}
    except (OSError, ValueError, KeyError):
        pass
    print(f"kcompress: notice: {folder} holds the checkpoint of a run with other settings or data; "
          "starting afresh", file=sys.stderr, flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    return empty


def _write_state(folder, state):
    """Write the state file whole or not at all (a kill mid-write keeps the previous one)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{STATE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(state))
    tmp.replace(folder / STATE_FILE)
