"""Training: the model directory it writes, loss/metric values, schedules, NaN, resumption."""
import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from kcompress import api
from kcompress.backend import keras, set_seed, tf
from kcompress.core.data import load_dataset
from kcompress.core.modeldir import load_model
from kcompress.core.objectives import ErrorFromAccuracy, evaluate_model, LogSumExpError, MaxAbsError
from kcompress.core.zoo import build_model
from kcompress.errors import TrainingDiverged
from kcompress.training import execution
from kcompress.training.config import TrainConfig
from kcompress.training.loop import fit
from kcompress.training.penalty import QuadraticPenalty


def test_train_writes_a_complete_model_directory_that_round_trips(reference_dir, reference):
    run = json.loads((reference_dir / "run.json").read_text())
    assert {"command", "settings", "versions", "seed", "history", "metrics", "dataset"} <= set(run)
    assert run["settings"]["epochs"] == 2 and len(run["history"]["loss"]) == 2 and "val_error" in run["history"]
    assert run["versions"]["tf-keras"].startswith("2.21")
    assert (reference_dir / "training.png").stat().st_size > 0 and (reference_dir / "confusion.png").exists()
    rows = list(csv.DictReader(open(reference_dir / "history.csv")))  # the same figures as run.json, per epoch
    assert [int(r["epoch"]) for r in rows] == [0, 1] and "val_error" in rows[0]
    assert [float(r["loss"]) for r in rows] == pytest.approx(run["history"]["loss"])
    reloaded = load_model(reference_dir)
    x = reference.data.x_test[:100]
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), reference.model.predict(x, verbose=0), atol=1e-6)
    assert evaluate_model(reloaded, reference.data)["test_error"] == pytest.approx(run["metrics"]["test_error"])
    assert run["metrics"]["test_error"] < 15.0  # two epochs on 5k images already learn MNIST


def test_lse_tends_to_the_max_error_and_metrics_match_numpy():
    y, p = np.array([[0.0], [0.0], [0.0]], np.float32), np.array([[0.1], [-0.3], [0.2]], np.float32)
    assert float(LogSumExpError(1e-4)(y, p)) == pytest.approx(0.3, abs=2e-3)
    assert float(LogSumExpError(1.0)(y, p)) < 0.3
    m = MaxAbsError(scale=100.0)
    m.update_state(y, p)
    assert float(m.result()) == pytest.approx(30.0)
    logs = {"accuracy": 0.75, "val_accuracy": 0.5, "loss": 1.0}
    ErrorFromAccuracy().on_epoch_end(0, logs)
    assert logs["error"] == pytest.approx(25.0) and logs["val_error"] == pytest.approx(50.0)


def test_index64_with_lse_reports_epsilon():
    set_seed(0)  # an unseeded 5-epoch run sat on either side of the bound
    ds = load_dataset("keys:lognormal:2000")
    model = build_model("index64", ds.input_shape, 1)
    fit(model, ds, TrainConfig(epochs=5, optimizer="adam", lr=1e-3, loss="lse", batch_size=256, verbose=0))
    m = evaluate_model(model, ds)
    assert set(m) >= {"max_error", "mae"} and 0 < m["mae"] <= m["max_error"] <= 2000
    assert model.layers[-1].get_config()["alpha"] == pytest.approx(0.05)


def test_step_schedule_decays_the_learning_rate(small_mnist):
    model = build_model("lenet300", small_mnist.input_shape, 10, hidden=(16,))
    cfg = TrainConfig(epochs=4, lr=0.1, lr_schedule="step", gamma=0.5, step_size=2, verbose=0)
    lrs = []
    fit(model, small_mnist, cfg, callbacks=[keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: lrs.append(float(model.optimizer.learning_rate)))])
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05])


def test_nan_stops_training_with_a_clear_error(small_mnist, tmp_path):
    with pytest.raises(TrainingDiverged, match="lower --lr"):
        api.train(tmp_path / "nan", data="mnist-sample", hidden="32", epochs=3, optimizer="adam", lr=1e30, verbose=0)
    assert not (tmp_path / "nan").exists()


def test_penalty_term_is_added_and_logged(small_mnist):
    model = build_model("lenet300", small_mnist.input_shape, 10, hidden=(8,))
    kernel = model.get_layer("dense_1").kernel
    term = QuadraticPenalty([kernel], mu=2.0, name="pull")
    with tf.GradientTape() as tape:
        value = term()
    np.testing.assert_allclose(tape.gradient(value, kernel).numpy(), 2.0 * kernel.numpy(), rtol=1e-5)
    history = fit(model, small_mnist, TrainConfig(epochs=1, verbose=0), penalties=[term])
    assert history["pull"][0] > 0 and history["total_loss"][0] > history["loss"][0]


def _tiny(data, seed=0):
    keras.utils.set_random_seed(seed)
    return build_model("lenet300", data.input_shape, 10, hidden=(16,))


def test_default_path_runs_several_steps_per_call_under_xla_and_matches_the_plain_loop(small_mnist):
    cfg = TrainConfig(epochs=2, batch_size=64, verbose=0)
    fast = fit(_tiny(small_mnist), small_mnist, cfg, planned_epochs=100)  # a run long enough to repay XLA
    plain = fit(_tiny(small_mnist), small_mnist, cfg, steps_per_execution=1, jit_compile=False)
    assert fast.execution == {"steps_per_execution": execution.STEPS_PER_EXECUTION, "jit_compile": True, "reason": ""}
    assert execution.STEPS_PER_EXECUTION > 1
    assert plain.execution["steps_per_execution"] == 1 and not plain.execution["jit_compile"]
    np.testing.assert_allclose(fast["loss"], plain["loss"], rtol=1e-3)  # same batches, same steps


def test_a_run_too_short_to_repay_compiling_keeps_the_plain_graph(small_mnist):
    steps = int(np.ceil(len(small_mnist.x_train) / 64)) * 2
    assert steps < execution.XLA_MIN_STEPS
    short = fit(_tiny(small_mnist), small_mnist, TrainConfig(epochs=2, batch_size=64, verbose=0))
    assert short.execution == {"steps_per_execution": execution.STEPS_PER_EXECUTION, "jit_compile": False,
                               "reason": f"no XLA: {steps} steps do not repay compiling"}


class _CountBatches(keras.callbacks.Callback):
    batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def test_a_per_batch_callback_sees_every_batch(small_mnist):
    counter = _CountBatches()
    history = fit(_tiny(small_mnist), small_mnist, TrainConfig(epochs=1, batch_size=64, verbose=0), callbacks=[counter])
    assert counter.batches == int(np.ceil(len(small_mnist.x_train) / 64))
    assert history.execution["steps_per_execution"] == 1 and "_CountBatches" in history.execution["reason"]


def test_a_step_xla_cannot_compile_falls_back_and_says_why(small_mnist):
    model = _tiny(small_mnist)
    # tf.numpy_function runs Python: XLA has no kernel for it
    hop = keras.layers.Lambda(lambda x: tf.reshape(tf.numpy_function(lambda a: a, [x], tf.float32), tf.shape(x)))
    wrapped = keras.Sequential([keras.Input(small_mnist.input_shape), hop, model])
    history = fit(wrapped, small_mnist, TrainConfig(epochs=2, batch_size=64, verbose=0))
    assert not history.execution["jit_compile"] and "no XLA" in history.execution["reason"]
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]


def test_xla_steps_persist_in_the_cache_folder_which_is_trimmed_oldest_first(small_mnist, tmp_path):
    """Training under XLA leaves compiled steps in $KCOMPRESS_XLA_CACHE (the suite's own folder,
    see conftest); ``trim`` keeps the most recently written files within the limit."""
    import os

    from kcompress.core import cache

    folder = os.environ["KCOMPRESS_XLA_CACHE"]
    assert f"--tf_xla_persistent_cache_directory={folder}" in os.environ["TF_XLA_FLAGS"]
    fit(_tiny(small_mnist), small_mnist, TrainConfig(epochs=1, batch_size=64, verbose=0), jit_compile=True)
    assert any(name.endswith(".pb") for name in os.listdir(folder))
    for i, size in enumerate((300, 200, 100)):
        (tmp_path / f"e{i}").write_bytes(b"x" * size)
        os.utime(tmp_path / f"e{i}", (1000 + i, 1000 + i))
    cache.trim(tmp_path, 350)
    assert sorted(os.listdir(tmp_path)) == ["e1", "e2"]


def test_the_training_split_is_converted_once_and_reshuffled_every_epoch_and_every_fit():
    from kcompress.backend import set_seed
    from kcompress.training import batches

    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    data = replace(load_dataset("keys:uniform:50"), x_train=x, y_train=np.arange(10.0))

    def epochs(count):
        given = batches.training_input(data, 4)
        assert given["steps_per_epoch"] == 3
        it = iter(given["x"])
        out = []
        for _ in range(count):
            parts = [next(it) for _ in range(3)]
            assert [len(p[0]) for p in parts] == [4, 4, 2]  # the last batch partial, as fit makes it
            assert all(np.array_equal(p[0].numpy().ravel(), p[1].numpy()) for p in parts)  # x and y stay paired
            out.append([int(v) for p in parts for v in p[1].numpy()])
        return out

    set_seed(1)
    first = epochs(2)
    entry = list(batches._tensors.values())[-1]
    tensors, pipeline = entry.x, entry.pipelines[4][0]
    second = epochs(2)
    set_seed(1)
    replay = epochs(2)
    assert entry.x is tensors and entry.pipelines[4][0] is pipeline  # converted and built once
    assert all(sorted(e) == list(range(10)) for e in first + second)  # every example once per epoch
    assert first[0] != first[1] and first != second  # a new order every epoch and every fit
    assert replay == first  # the seed decides the orders
    set_seed(1)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():  # a pipeline of its own, the same orders
        assert epochs(2) == first
    targets = replace(data, y_train=np.arange(10.0) * 2)  # other targets (teacher logits): their own tensors
    batches.training_input(targets, 4)
    assert np.array_equal(list(batches._tensors.values())[-1].y.numpy(), targets.y_train)


def test_index64_biases_start_random_like_its_weights():
    from kcompress.core.zoo import build_model

    model = build_model("index64", (64,), 1, hidden=(64, 64))
    biases = [model.get_layer(n).bias.numpy() for n in ("dense_1", "dense_2")]
    assert all(0.02 < b.std() < 0.08 and abs(b.mean()) < 0.03 for b in biases)
    assert not build_model("lenet300", (28, 28), 10).get_layer("dense_1").bias.numpy().any()
