"""kcompress.keras.alpha: the α-schedule as pieces of a Keras user's own training script."""
import csv

import numpy as np
import pytest

from kcompress.backend import keras, set_seed, tf
from kcompress.errors import UsageError
from kcompress.keras.alpha import AlphaSchedule
from kcompress.methods.alpha import blend

LR = 1e-2
HALF = {"alpha_schedule": "list", "alpha_list": "0.5"}  # α = 0.5, then 0


@pytest.fixture(scope="module")
def xy():
    """A two-class problem on 20 features (512 examples)."""
    x = np.random.default_rng(0).normal(size=(512, 20)).astype("float32")
    return x, (x[:, :10].sum(1) > 0).astype("int64")


def user_model():
    """What a user brings: a functional net, 20 → 32 → 16 → 2 logits."""
    set_seed(0)
    inputs = keras.Input((20,))
    hidden = keras.layers.Dense(32, activation="relu", name="dense_1")(inputs)
    hidden = keras.layers.Dense(16, activation="relu", name="dense_2")(hidden)
    return keras.Model(inputs, keras.layers.Dense(2, name="dense_3")(hidden))


def compile_(al):
    al.model.compile(keras.optimizers.Adam(LR), keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def batches(x, y):
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(64)


class Seen(keras.callbacks.Callback):
    """A user's own callback: the learning rate at each epoch's start and end, and each epoch's logs."""

    def on_train_begin(self, logs=None):
        self.begin, self.end, self.logs = [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.begin.append(float(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        self.end.append(float(self.model.optimizer.learning_rate))
        self.logs.append(dict(logs))


def test_a_users_script_reaches_alpha_zero_and_keeps_the_branches_only(xy):
    x, y = xy
    model = user_model()
    reference = model.get_weights()
    al = AlphaSchedule(model, ranks={"dense_1": 4, "dense_2": 3}, alpha_decay=0.5, alpha_min=0.2, epochs_per_alpha=2)
    a = al.alphas
    assert a == pytest.approx([np.exp(-0.5), np.exp(-1.0), np.exp(-1.5), 0.0]) and al.epochs() == 8
    compile_(al)
    seen = Seen()
    al.model.fit(batches(x, y), epochs=al.epochs(), callbacks=[al.callback(), seen], verbose=0)
    assert [l["alpha"] for l in seen.logs] == [a[0], a[0], a[1], a[1], a[2], a[2], 0.0, 0.0]
    small, stats = al.finalize()
    names = {l.name for l in small.layers}
    assert {"dense_1", "dense_2"}.isdisjoint(names) and {"dense_1_narrow", "dense_2_proj", "dense_3"} <= names
    assert not blend.blend_layers(small) and stats["alpha"] == 0.0
    branches = 4 * (20 + 32) + 32 + 3 * (32 + 16) + 16
    assert small.count_params() == stats["params"] == branches + 16 * 2 + 2 and stats["branch_params"] == branches
    np.testing.assert_allclose(small.predict(x, verbose=0), al.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert np.mean(small.predict(x, verbose=0).argmax(1) == y) > 0.8  # the branches learnt the task
    assert all(np.array_equal(w, r) for w, r in zip(model.get_weights(), reference))  # the user's model untouched


def test_the_lr_is_reset_at_each_alpha_and_lr_drops_end_an_alpha(xy):
    """Step rule ×0.5 per epoch: two cuts (alpha_lr_drops) end each α after 3 of its 5 epochs; then the
    optimizer's learning rate is back at the user's 1e-2, and fit stops after α = 0 (6 of its 10 epochs)."""
    al = AlphaSchedule(user_model(), ranks={"dense_1": 4}, **HALF, epochs_per_alpha=5, lr_schedule="step",
                       step_size=1, gamma=0.5, alpha_lr_drops=2)
    compile_(al)
    seen = Seen()
    history = al.model.fit(batches(*xy), epochs=al.epochs(), callbacks=[al.callback(), seen], verbose=0)
    assert len(history.epoch) == 6 and al.epochs() == 10
    assert seen.begin == pytest.approx([LR, LR / 2, LR / 4] * 2)
    assert seen.end[2] == pytest.approx(LR)  # reset at the end of α = 0.5
    assert [(s["alpha"], s["epochs"], s["lr_drops"]) for s in al.steps] == [(0.5, 3, 2), (0.0, 3, 2)]


def test_a_sequence_class_weights_and_the_users_callbacks(xy, tmp_path):
    x, y = xy

    class Batches(keras.utils.Sequence):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return x[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64]

    al = AlphaSchedule(user_model(), ranks={"dense_1": 4}, **HALF, epochs_per_alpha=2, epochs=1)
    compile_(al)
    callbacks = [al.callback(), keras.callbacks.EarlyStopping("val_loss", patience=5),
                 keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
                 keras.callbacks.ModelCheckpoint(str(tmp_path / "blended.keras"))]
    al.model.fit(Batches(), validation_data=(x[:128], y[:128]), class_weight={0: 1.0, 1: 3.0},
                 epochs=al.epochs(), callbacks=callbacks, verbose=0)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["alpha"]) for r in rows] == [0.5, 0.5, 0.0]
    assert [float(r["lr"]) for r in rows] == pytest.approx([LR] * 3)  # the plateau rule, on val_loss: no cut yet
    saved = keras.models.load_model(tmp_path / "blended.keras")
    assert [float(l.alpha.numpy()) for l in blend.blend_layers(saved)] == [0.0]
    small = al.finalize()[0]
    np.testing.assert_allclose(saved.predict(x, verbose=0), small.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_mistakes_are_one_line_usage_errors(xy):
    model = user_model()
    for options, message in [(dict(lr=1e-3), "lr belong"), (dict(alpha_decays=0.1), "unknown setting"),
                              (dict(ranks={"dense_1": 0}), "rank >= 1"), (dict(layers="dense_9"), "no layer named"),
                              (dict(ranks={"dense_1": 2}, layers="dense_1"), "not both"),
                              (dict(target="teacher"), "teacher"), (dict(prune=1.5), "--prune must be in"),
                              (dict(alpha_list="0.5"), "alpha_schedule='list'")]:
        with pytest.raises(UsageError, match=message) as caught:
            AlphaSchedule(model, **options)
        assert len(str(caught.value).splitlines()) == 1
    al = AlphaSchedule(model, ranks={"dense_1": 4}, **HALF, epochs_per_alpha=1)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(UsageError, match="al.model.fit"):
        model.fit(batches(*xy), epochs=1, callbacks=[al.callback()], verbose=0)
    al.model.compile(keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(LR, 10, 0.5)), "mse")
    with pytest.raises(UsageError, match="not a LearningRateSchedule"):
        al.model.fit(batches(*xy), epochs=1, callbacks=[al.callback()], verbose=0)


def test_the_script_and_the_cli_give_the_same_model(reference_dir, tmp_path):
    """Same reference, settings and seed: ``compress --method alpha`` and the pieces give the same branches and
    bitwise the same weights, when the script trains as the command does: one ``fit`` per α with a fresh
    optimizer (the command's fit compiles anew), the batches of :func:`training_input` drawn after the same
    seed, the branches initialised after the same ``clone`` of the reference. At α = 0 the command trains the
    stripped model and the script the blended one, which is exact: 0·original + 1·branch is the branch in
    floating point, and so are its gradients. A script with one ``compile`` and one ``fit`` keeps Adam's
    moments across α: another run of the same method, not the same weights."""
    from kcompress import api
    from kcompress.core.surgery import clone
    from kcompress.methods.alpha.settings import AlphaSettings
    from kcompress.methods.base import finetune_config
    from kcompress.pipeline import load_reference
    from kcompress.training.batches import training_input
    from kcompress.training.loop import compile_model

    options = dict(alpha_schedule="list", alpha_list="0.5,0", epochs_per_alpha=2, epochs=1, alpha_patience=1,
                   alpha_lr_drops=1)
    cli = api.compress(reference_dir, "alpha", tmp_path / "cli", seed=0, **options)

    ref, s = load_reference(reference_dir), AlphaSettings.from_dict(options)
    cfg = finetune_config(ref, s)  # the command's optimizer (Adam, 1e-3) and the reference's loss and batch
    set_seed(0)
    al = AlphaSchedule(clone(ref.model), s)
    for alpha in al.alphas:
        compile_model(al.model, ref.data, cfg)
        al.model.fit(**training_input(ref.data, cfg.batch_for(len(ref.data.x_train))), epochs=s.epochs_at(alpha),
                     validation_data=(ref.data.x_val, ref.data.y_val), callbacks=[al.callback()], verbose=0)
    small, stats = al.finalize()
    assert stats["branches"] == cli.record["method"]["branches"]  # dense_1 and dense_2: ranks, parameters
    assert [w.shape for w in small.weights] == [w.shape for w in cli.model.weights]
    assert small.count_params() == cli.model.count_params()
    assert [s["alpha"] for s in stats["steps"]] == [0.5, 0.0] and cli.record["history"]["alpha"][-1] == 0.0
    for mine, theirs in zip(small.get_weights(), cli.model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
