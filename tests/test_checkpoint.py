"""Training resumed after a kill (``training/checkpoint.py``): the whole history returned, the first epoch
always checkpointed, a checkpoint of other settings discarded, one record after a resumed ``train``."""
import json
import os
from dataclasses import replace

import pytest

from kcompress.backend import keras
from kcompress.cli.main import main
from kcompress.core.zoo import build_model
from kcompress.training.config import TrainConfig
from kcompress.training.loop import fit


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
