"""kcompress.keras.pruner: the pruner masks as pieces of a Keras user's own training script (their model, data,
optimizer and callbacks), the same implementation as ``compress --method pruner``, under a MirroredStrategy too."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kcompress.backend import keras, set_seed, tf
from kcompress.errors import UsageError
from kcompress.keras.pruner import Pruner
from kcompress.methods.pruner import gates as G

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(gate_lr=0.2, lambda_start=10.0, lambda_every=1)  # gates that settle in a few epochs on small data


def user_model(mnist):
    """What a user brings: a functional 784-64-32-10 net trained one epoch with their own Adam."""
    x, y, _, _ = mnist
    set_seed(0)
    inputs = keras.Input((784,))
    hidden = keras.layers.Dense(64, activation="relu", name="hidden1")(inputs)
    hidden = keras.layers.Dense(32, activation="relu", name="hidden2")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(hidden))
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(batches(x, y), epochs=1, verbose=0)
    return model


def batches(x, y):
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(64)


def compile_for_user(pr):
    pr.model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                     metrics=["accuracy"])


def widths(model):
    return [l.units for l in model.layers if isinstance(l, keras.layers.Dense)]


def test_a_users_script_reaches_exactly_the_target_units(mnist, tmp_path):
    x, y, xt, _ = mnist
    model = user_model(mnist)
    before = [w.copy() for w in model.get_weights()]
    pr = Pruner(model, keep_units={"hidden1": 16, "hidden2": 8}, max_epochs=30, **FAST)
    compile_for_user(pr)
    log = tmp_path / "gates.csv"
    theirs = [keras.callbacks.CSVLogger(str(log)), keras.callbacks.EarlyStopping("l_pru", patience=3)]  # read its logs
    history = pr.model.fit(batches(x, y), epochs=pr.max_epochs(), callbacks=[pr.callback(batches(x, y)), *theirs],
                           verbose=0)
    small, stats = pr.finalize()
    assert stats["converged"] and stats["converged_epoch"] == stats["gate_epochs"] == len(history.epoch) < 30
    assert stats["open_at_end"] == {"hidden1": 16, "hidden2": 8} and widths(small) == [16, 8, 10]
    assert not any(isinstance(l, G.Gate) for l in small.layers)
    # the smaller model computes the gated model with its gates made exact masks: closed units removed for real
    np.testing.assert_allclose(small.predict(xt, verbose=0), G.harden(pr.model.inner).predict(xt, verbose=0),
                               rtol=1e-5, atol=1e-5)
    rows = list(csv.DictReader(log.open()))  # the user's CSVLogger sees the gate diagnostics every epoch
    assert len(rows) == len(history.epoch) and float(rows[-1]["open_hidden1"]) == 16
    assert float(rows[0]["lam"]) == FAST["lambda_start"]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the user's model is untouched


class Batches(keras.utils.Sequence):
    """A user's Sequence of batches."""

    def __init__(self, x, y, size=100):
        super().__init__()
        self.x, self.y, self.size = x, y, size

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        return self.x[i * self.size:(i + 1) * self.size], self.y[i * self.size:(i + 1) * self.size]


def test_a_sequence_with_class_weights_a_checkpoint_and_two_fits(mnist, tmp_path):
    """The λ/μ schedule carries on across two fits; the epochs and raises count over both."""
    x, y, _, _ = mnist
    pr = Pruner(user_model(mnist), keep=0.25, max_epochs=40, gate_lr_schedule="on-pruning", lr_drop_share=0.5,
                **FAST)
    compile_for_user(pr)
    data, weights = Batches(x, y), {c: 2.0 if c == 0 else 1.0 for c in range(10)}
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "gated.ckpt"), save_weights_only=True)
    first = pr.model.fit(data, epochs=3, class_weight=weights, callbacks=[pr.callback(data), checkpoint], verbose=0)
    assert len(first.epoch) == 3 and (tmp_path / "gated.ckpt.index").exists()
    rest = pr.model.fit(data, epochs=pr.max_epochs() - 3, class_weight=weights, callbacks=[pr.callback()], verbose=0)
    small, stats = pr.finalize()
    assert stats["converged"] and stats["gate_epochs"] == stats["converged_epoch"] == 3 + len(rest.epoch)
    assert widths(small) == [16, 8, 10] and pr.targets == {"hidden1": 16, "hidden2": 8}
    raises = [r["epoch"] for r in stats["lambda_raises"]]
    assert raises == sorted(raises) and raises[-1] > 3  # numbered across the fits
    lr = keras.backend.get_value(pr.model.optimizer.learning_rate)
    assert stats["lr_dropped_epoch"] is not None and lr == pytest.approx(1e-4)  # ×gamma (0.1) once


def test_b_the_script_and_the_command_keep_the_same_units_and_weights(mnist):
    """Same model, data, settings and seed: ``compress --method pruner`` (through the API) and the pieces (given
    the command's loss, network optimizer and batches) are one implementation, so with a fixed μ they end bit
    for bit equal. An adaptive μ is seeded by the task loss of the model as given, which the pieces measure
    with Keras ``evaluate`` batch by batch and the command in one pass over the training split: the same loss
    up to float round-off (1e-7 relative), which the λ raises amplify (LeNet-300-100 after 12 epochs: ~1e-3
    in the weights, the same units kept)."""
    from kcompress import api
    from kcompress.methods.pruner.method import gate_phase_config, task_loss
    from kcompress.methods.pruner.settings import PrunerSettings
    from kcompress.pipeline import load_reference
    from kcompress.training.loop import compile_model

    model, (x, y, xt, yt) = user_model(mnist), mnist
    data = dict(x_train=x, y_train=y, x_test=xt, y_test=yt)
    options = dict(keep_units="hidden1=16,hidden2=8", mu=0.3, max_epochs=15, epochs=0, **FAST)
    cli = api.compress(model, "pruner", seed=0, data=data, **options)

    ref, settings = load_reference(model, data), PrunerSettings.from_dict(options)
    cfg = gate_phase_config(ref, settings)
    small, stats = script_run(ref, options)
    record = cli.record["method"]
    assert stats["converged"] and record["converged"] and stats["kept_units"] == record["kept_units"]
    assert stats["gate_epochs"] == record["gate_epochs"] and widths(small) == widths(cli.model) == [16, 8, 10]
    for a, b in zip(cli.model.get_weights(), small.get_weights()):
        np.testing.assert_array_equal(a, b)

    adaptive = Pruner(ref.model, settings.replace(mu="adaptive"))
    compile_model(adaptive.model, ref.data, cfg)
    seed = adaptive.callback(ref.data.x_train, ref.data.y_train)  # the training split, as the command's
    seed.set_model(adaptive.model)
    assert seed.task_loss() == pytest.approx(task_loss(ref.model, ref, cfg), rel=1e-6)


def script_run(ref, options):
    """The pieces on ``ref`` as the command runs them: its loss, network optimizer and batches, seed 0."""
    from kcompress.methods.pruner.method import gate_phase_config
    from kcompress.methods.pruner.settings import PrunerSettings
    from kcompress.training.batches import training_input
    from kcompress.training.loop import compile_model

    settings = PrunerSettings.from_dict(options)
    cfg = gate_phase_config(ref, settings)
    set_seed(0)
    pr = Pruner(ref.model, settings)
    compile_model(pr.model, ref.data, cfg)  # the reference's loss and the command's network optimizer
    pr.model.fit(**training_input(ref.data, cfg.batch_for(len(ref.data.x_train))), epochs=pr.max_epochs(),
                 callbacks=[pr.callback()], verbose=0)  # a fixed μ needs no data
    return pr.finalize()


def test_b_on_lenet300_the_script_and_the_command_end_with_the_same_weights(reference_dir):
    """LeNet-300-100 (the session reference), keep 35 % of each hidden layer at a fixed μ: bit-equal weights."""
    from kcompress import api
    from kcompress.pipeline import load_reference

    options = dict(keep=0.35, mu=0.3, max_epochs=8, epochs=0, **FAST)
    cli = api.compress(reference_dir, "pruner", seed=0, **options)
    small, stats = script_run(load_reference(reference_dir), options)
    record = cli.record["method"]
    assert stats["kept_units"] == record["kept_units"] and stats["gate_epochs"] == record["gate_epochs"]
    assert [len(v) for v in stats["kept_units"].values()] == [105, 35]
    for a, b in zip(cli.model.get_weights(), small.get_weights()):
        np.testing.assert_array_equal(a, b)


STRATEGY_SCRIPT = """
import json, sys
import numpy as np
from kcompress.backend import keras, set_seed, tf
from kcompress.core.data import load_dataset
from kcompress.keras.pruner import Pruner

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
ds = load_dataset("mnist-sample")
x, y = ds.x_train[:2000].reshape(2000, -1), ds.y_train[:2000]

def kept(strategy):
    set_seed(0)
    with strategy.scope():
        inputs = keras.Input((784,))
        hidden = keras.layers.Dense(64, activation="relu", name="hidden1")(inputs)
        hidden = keras.layers.Dense(32, activation="relu", name="hidden2")(hidden)
        pr = Pruner(keras.Model(inputs, keras.layers.Dense(10)(hidden)), keep_units={"hidden1": 16, "hidden2": 8},
                    gate_lr=0.2, lambda_start=10.0, lambda_every=1, max_epochs=15)
        pr.model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(2000, seed=0).batch(100)
    pr.model.fit(data, epochs=pr.max_epochs(), callbacks=[pr.callback(data)], verbose=0)
    small, stats = pr.finalize()
    return {"replicas": pr.model.distribute_strategy.num_replicas_in_sync, "kept": stats["kept_units"],
            "converged": stats["converged"], "weights": [w.tolist() for w in small.get_weights()]}

print(json.dumps([kept(tf.distribute.get_strategy()), kept(tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"]))]))
"""


def test_c_mirrored_strategy_on_two_cpus_keeps_the_same_units():
    """Logical CPUs exist only if set before TensorFlow starts: a process of its own. Two replicas split each
    batch, Keras averages their task losses and the gate trainer halves the penalty of each: the same
    gradients up to float round-off (the weights end ~1e-7 apart), hence the same units."""
    proc = subprocess.run([sys.executable, "-c", STRATEGY_SCRIPT], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain, mirrored = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (plain["replicas"], mirrored["replicas"]) == (1, 2)
    assert plain["converged"] and mirrored["converged"] and mirrored["kept"] == plain["kept"]
    for a, b in zip(plain["weights"], mirrored["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_mistakes_are_one_line_usage_errors(mnist):
    model = user_model(mnist)
    with pytest.raises(UsageError, match="lr belong to your own compile and fit"):
        Pruner(model, lr=0.1)
    with pytest.raises(UsageError, match="no layer named nosuch"):
        Pruner(model, keep_units={"nosuch": 3})
    with pytest.raises(UsageError, match="output layer's units cannot be removed"):
        Pruner(model, layers=["hidden1", "logits"])
    with pytest.raises(UsageError, match="LearningRateScheduler"):
        Pruner(model, gate_lr_schedule="step")
    pr = Pruner(model, keep=0.5)
    assert pr.targets == {"hidden1": 32, "hidden2": 16}
    with pytest.raises(UsageError, match="seeds the adaptive μ"):
        pr.callback()
    with pytest.raises(UsageError, match="first fit pr.model"):
        pr.finalize()
    with pytest.raises(UsageError, match="pr.model.fit"):
        model.fit(batches(*mnist[:2]), epochs=1, callbacks=[pr.callback(batches(*mnist[:2]))], verbose=0)
