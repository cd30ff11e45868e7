"""kcompress.keras: LC as pieces of a Keras user's own training script (compile, fit, callbacks of their own)."""
import numpy as np
import pytest

import kcompress.keras as kk
from kcompress.backend import keras, set_seed, tf
from kcompress.errors import UsageError


def user_model(mnist, epochs=3):
    """What a user brings: a functional Dense net trained with their own Adam on a tf.data input."""
    x, y, _, _ = mnist
    set_seed(0)
    inputs = keras.Input((784,))
    hidden = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
    outputs = keras.layers.Dense(10, name="dense_2")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(batches(x, y), epochs=epochs, verbose=0)
    return model


def batches(x, y):
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(64)


def error(model, mnist):
    _, _, xt, yt = mnist
    return float(np.mean(model.predict(xt, verbose=0).argmax(1) != yt))


class EpochCounter(keras.callbacks.Callback):
    """A user's own callback: it sees LC's logs."""

    def on_train_begin(self, logs=None):
        self.logs = []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))


def test_quantization_in_a_users_fit(mnist):
    model = user_model(mnist)
    lc = kk.LC(model, ["dense_1:quant:k=4", "dense_2:quant:k=4"], mu0=1e-3, mu_factor=2.0, mu_steps=4, l_epochs=2)
    assert lc.epochs() == 8
    lc.model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                     metrics=["accuracy"])
    counter = EpochCounter()
    stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=20)
    lc.model.fit(batches(*mnist[:2]), epochs=lc.epochs(), callbacks=[lc.callback(), counter, stopper], verbose=0)
    assert [s["mu"] for s in lc.steps] == pytest.approx([1e-3, 2e-3, 4e-3, 8e-3])
    assert len(counter.logs) == 8 and all("lc_penalty" in l and "lc_distance" in l for l in counter.logs)
    assert [l["lc_mu"] for l in counter.logs[:3]] == pytest.approx([1e-3, 1e-3, 2e-3])
    plain, stats = lc.finalize()
    assert plain is model  # the model given, its kernels now Δ(Θ)
    for name in ("dense_1", "dense_2"):
        kernel = plain.get_layer(name).kernel.numpy()
        assert len(np.unique(kernel)) <= 4
    assert error(plain, mnist) < 0.5  # chance is 0.9
    assert stats["bits_ratio"] > 10 and [t["task"] for t in stats["tasks"]] == ["dense_1:quant:k=4", "dense_2:quant:k=4"]


def test_pruning_keeps_exactly_the_share(mnist):
    model = user_model(mnist, epochs=2)
    biases = [model.get_layer(n).bias.numpy().copy() for n in ("dense_1", "dense_2")]
    lc = kk.LC(model, ["all:prune-l0:kappa=0.1"], mu0=1e-3, mu_factor=2.0, mu_steps=3, l_epochs=1, lr_decay=0.9)
    lc.model.compile(keras.optimizers.SGD(0.05, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    lc.model.fit(batches(*mnist[:2]), epochs=lc.epochs(), callbacks=[lc.callback()], verbose=0)
    assert [s["lr"] for s in lc.steps] == pytest.approx([0.05, 0.045, 0.0405])  # lr₀·decay^step, as the CLI's L-steps
    plain, stats = lc.finalize()
    kernels = [plain.get_layer(n).kernel.numpy() for n in ("dense_1", "dense_2")]
    size = sum(k.size for k in kernels)
    assert sum(np.count_nonzero(k) for k in kernels) == round(0.1 * size)  # one vector: 10 % of all kernel entries
    assert stats["tasks"][0]["params"] == round(0.1 * size)
    assert not np.array_equal(plain.get_layer("dense_1").bias.numpy(), biases[0])  # biases train, unpruned
    assert error(plain, mnist) < 0.5


def test_more_epochs_than_the_schedule_stop_and_finalize_before_fit_is_direct_compression(mnist):
    model = user_model(mnist, epochs=1)
    reference = model.get_layer("dense_2").kernel.numpy().copy()
    lc = kk.LC(model, ["each:quant:k=2"], mus=[1e-3, 1e-2], l_epochs=1)
    lc.model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = lc.model.fit(batches(*mnist[:2]), epochs=10, callbacks=[lc.callback()], verbose=0)
    assert len(history.epoch) == 2 and len(lc.steps) == 2
    dc = kk.LC(user_model(mnist, epochs=1), ["dense_2:quant:k=2"]).finalize()[0].get_layer("dense_2").kernel.numpy()
    assert len(np.unique(dc)) == 2 and set(np.sign(dc.ravel())) <= set(np.sign(reference.ravel())) | {0}


def test_mistakes_are_one_line_usage_errors(mnist):
    model = user_model(mnist, epochs=1)
    with pytest.raises(UsageError, match="no layer with a kernel named dense_9"):
        kk.LC(model, ["dense_9:quant:k=4"])
    with pytest.raises(UsageError, match="unknown compression"):
        kk.LC(model, ["all:quantise:k=4"])
    lc = kk.LC(model, ["all:quant:k=4"], mu_steps=1)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(UsageError, match="lc.model.fit"):
        model.fit(batches(*mnist[:2]), epochs=1, callbacks=[lc.callback()], verbose=0)


def test_the_pieces_and_the_cli_give_the_same_model(reference_dir, tmp_path):
    """Same reference, settings and seed: ``compress --method lc`` and the pieces driven by one plain Keras fit
    per μ step (the CLI's L-step is one fit each, with a fresh batch order drawn from numpy's generator) end
    with the same pruned positions / codebook."""
    from kcompress import api
    from kcompress.methods.base import finetune_config
    from kcompress.methods.lc.settings import LCSettings
    from kcompress.pipeline import load_reference
    from kcompress.training.batches import training_input
    from kcompress.training.loop import compile_model

    tasks = ("dense_1,dense_3:prune-l0:kappa=0.05", "dense_2:quant:k=4")
    options = dict(task=tasks, mu0=1e-3, mu_factor=3.0, mu_steps=3, l_epochs=1)
    cli = api.compress(reference_dir, "lc", tmp_path / "cli", seed=0, **options).model

    ref = load_reference(reference_dir)
    cfg = finetune_config(ref, LCSettings(**options))
    set_seed(0)
    lc = kk.LC(ref.model, tasks, mu0=1e-3, mu_factor=3.0, mu_steps=3, l_epochs=1, lr_decay=LCSettings.lr_decay)
    compile_model(lc.model, ref.data, cfg)  # the reference's loss and the CLI's optimizer (SGD, Nesterov)
    callback = lc.callback()
    for _ in range(3):  # one fit per μ step, as the CLI's L-steps
        lc.model.fit(**training_input(ref.data, cfg.batch_for(len(ref.data.x_train))), epochs=1, callbacks=[callback],
                     verbose=0)
    pieces, _ = lc.finalize()
    kernels = {name: (cli.get_layer(name).kernel.numpy(), pieces.get_layer(name).kernel.numpy())
               for name in ("dense_1", "dense_2", "dense_3")}
    for a, b in kernels.values():
        np.testing.assert_array_equal(a == 0, b == 0)  # the same kept positions
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    a, b = kernels["dense_2"]
    assert len(np.unique(a)) == 4
    np.testing.assert_allclose(np.unique(a), np.unique(b), rtol=1e-4, atol=1e-5)  # the same codebook
    assert np.count_nonzero(kernels["dense_1"][0]) + np.count_nonzero(kernels["dense_3"][0]) == \
        round(0.05 * (kernels["dense_1"][0].size + kernels["dense_3"][0].size))


def test_the_readme_example_runs_as_written(capsys):
    """README "In your own training script": 4 values in the hidden kernel, fewer bits than the reference."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## In your own training script", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    values, ratio = capsys.readouterr().out.split()[-2:]
    assert int(values) == 4 and float(ratio) > 1
