"""Learning curves per optimizer step (note 001, figures 1-2) and how a regression loss combines its
outputs (note 002: the mean of the outputs' MSE, the sum, or one term per output)."""
import contextlib
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from kcompress import api
from kcompress.backend import keras
from kcompress.cli.main import main
from kcompress.core.data import Dataset
from kcompress.core.objectives import OutputLoss, get_loss, scores
from kcompress.core.zoo import build_model
from kcompress.errors import UsageError
from kcompress.reporting import plots
from kcompress.training import curves
from kcompress.training.config import TrainConfig
from kcompress.training.loop import fit


def _rows(folder):
    with open(Path(folder) / "steps.csv") as f:
        return list(csv.DictReader(f))


def _regression(rng, outputs=3, n=256):
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, :outputs] + 0.1 * rng.normal(size=(n, outputs))).astype(np.float32)
    return Dataset("random", x[:192], y[:192], x[192:224], y[192:224], x[224:], y[224:], task="regression")


def _dense(data, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input(data.input_shape), keras.layers.Dense(data.y_train.shape[-1])])


def test_step_curve_has_a_row_every_n_steps_and_ends_where_the_epoch_does(small_mnist, tmp_path):
    steps = math.ceil(len(small_mnist.x_train) / 64)  # 13 steps: rows at 5, 10 and the last step
    model = build_model("lenet300", small_mnist.input_shape, 10, hidden=(16,))
    history = fit(model, small_mnist, TrainConfig(epochs=1, batch_size=64, curve_every=5, verbose=0))
    plots.step_curves(curves.save(tmp_path), tmp_path / "steps.png", "lenet300")
    rows = _rows(tmp_path)
    assert len(rows) == math.ceil(steps / 5) and [int(r["step"]) for r in rows] == [5, 10, steps]
    assert list(rows[0]) == ["step", "epoch", "loss", "error", "val_loss", "val_error"]
    assert {r["epoch"] for r in rows} == {"0"} and (tmp_path / "steps.png").stat().st_size > 0
    samples = [320, 320, 160]  # each row covers the batches since the previous one: together, the epoch
    for key in ("loss", "error"):
        assert np.dot(samples, [float(r[key]) for r in rows]) / 800 == pytest.approx(history[key][-1], rel=1e-4)
    last = rows[-1]  # the validation after the last step is the epoch's own
    assert float(last["val_error"]) == pytest.approx(history["val_error"][-1], abs=1e-6)
    assert float(last["val_loss"]) == pytest.approx(history["val_loss"][-1], rel=1e-4)


def test_steps_count_on_across_the_fits_of_one_run_until_saved(rng, tmp_path):
    data = _regression(rng)  # 6 steps of 32 per epoch
    model, cfg = _dense(data), TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=1e-2, curve_every=4, verbose=0)
    fit(model, data, cfg)
    fit(model, data, cfg, compile=False)  # a second L-step, as LC trains
    curves.save(tmp_path)
    rows = _rows(tmp_path)
    assert [(int(r["step"]), int(r["epoch"])) for r in rows] == [(4, 0), (6, 0), (8, 1), (12, 1)]
    assert list(rows[0]) == ["step", "epoch", "loss", "max_error", "val_loss", "val_max_error"]
    curves.save(tmp_path / "none")  # nothing recorded since: nothing written
    assert not (tmp_path / "none").exists()


def test_no_rows_without_curve_every(small_mnist, tmp_path):
    fit(build_model("lenet300", small_mnist.input_shape, 10, hidden=(8,)), small_mnist,
        TrainConfig(epochs=1, batch_size=256, verbose=0))
    curves.save(tmp_path)
    assert not (tmp_path / "steps.csv").exists()


def test_reductions_on_the_notes_worked_example():
    """Prediction (1, 2, 3) against target (0, 0, 0): mean 14/3, sum 14, per output 1, 4 and 9."""
    data = Dataset("one", *[np.zeros((1, 3), np.float32)] * 6, task="regression")
    y, p = np.zeros((1, 3), np.float32), np.array([[1.0, 2.0, 3.0]], np.float32)
    assert float(get_loss("mse", data)(y, p)) == pytest.approx(14 / 3)
    assert float(get_loss("mse", data, reduction="sum")(y, p)) == pytest.approx(14.0)
    assert float(get_loss("mse", data, reduction="per-output")(y, p)) == pytest.approx(14.0)
    terms = [OutputLoss(k) for k in range(3)]
    for term in terms:
        term.update_state(y, p)
    assert [float(t.result()) for t in terms] == pytest.approx([1.0, 4.0, 9.0])
    assert float(get_loss("mae", data, reduction="sum")(y, p)) == pytest.approx(6.0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "per-output"])
def test_each_reduction_trains_a_three_output_regression(rng, reduction):
    data = _regression(rng)
    cfg = TrainConfig(epochs=2, batch_size=32, optimizer="adam", lr=1e-2, loss_reduction=reduction, verbose=0)
    history = fit(_dense(data), data, cfg)
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
    terms = [f"loss_out{k}" for k in range(3)]
    if reduction != "per-output":
        assert not set(terms) & set(history)
        return
    assert set(terms + [f"val_{t}" for t in terms]) <= set(history)
    for epoch in range(2):  # the loss trained on is the sum of the terms
        assert sum(history[t][epoch] for t in terms) == pytest.approx(history["loss"][epoch], rel=1e-4)


def test_sum_trains_on_the_outputs_total_where_mean_trains_on_their_average(rng):
    data = _regression(rng)
    cfg = TrainConfig(epochs=1, batch_size=1000, optimizer="sgd", lr=1e-9, verbose=0)  # one step that moves nothing
    mean = fit(_dense(data), data, cfg)["loss"][0]
    total = fit(_dense(data), data, cfg.replace(loss_reduction="sum"))["loss"][0]
    assert total == pytest.approx(3 * mean, rel=1e-4)


@pytest.mark.parametrize("changes, needle", [
    (dict(curve_every=-1), "--curve-every must be >= 0"),
    (dict(loss="xent", loss_reduction="sum"), "--loss-reduction sum needs --loss mse or mae"),
    (dict(loss="lse", loss_reduction="per-output"), "--loss-reduction per-output needs --loss mse or mae"),
    (dict(loss_reduction="median"), "unknown --loss-reduction 'median'"),
])
def test_bad_settings_are_refused(changes, needle):
    with pytest.raises(UsageError, match=needle):
        TrainConfig.from_dict(changes)


def test_a_classifier_refuses_a_loss_reduction(small_mnist):
    with pytest.raises(UsageError, match="combines the outputs of an mse or mae regression, not of --loss xent"):
        get_loss(None, small_mnist, reduction="per-output")


def test_the_flags_show_in_help_and_refusals_exit_2_with_one_line(capsys, tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(out.getvalue().split())
    assert "--curve-every" in text and "--loss-reduction {mean,sum,per-output}" in text
    capsys.readouterr()
    for extra, needle in ((["--curve-every", "-2"], "--curve-every must be >= 0"),
                          (["--loss-reduction", "sum"], "--loss-reduction sum combines the outputs")):
        assert main(["train", "--out", str(tmp_path / "m"), "--hidden", "8", "--epochs", "1", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
        assert not (tmp_path / "m").exists()


def test_run_json_records_both_settings(tmp_path):
    out = tmp_path / "m"
    api.train(out, data="keys:uniform:300", model="index64", epochs=1, loss_reduction="sum", curve_every=3,
              batch_size=64, verbose=0)
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["loss_reduction"] == "sum" and settings["curve_every"] == 3
    assert (out / "steps.csv").is_file() and (out / "steps.png").stat().st_size > 0
    api.compress(out, "prune", tmp_path / "p", epochs=1, curve_every=2)  # a method's own flag
    assert _rows(tmp_path / "p") and (tmp_path / "p" / "steps.png").is_file()
    assert json.loads((tmp_path / "p" / "run.json").read_text())["settings"]["curve_every"] == 2
