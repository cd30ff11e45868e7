"""Pruner masks: gate losses, gate placement, real unit removal, the schedule, Markov steps, the method."""
import dataclasses

import numpy as np
import pytest

from kcompress.methods.pruner import gates as G
from kcompress.backend import keras, tf
from kcompress.methods.pruner.schedule import LambdaMuSchedule
from kcompress.methods.pruner.settings import PrunerSettings
from kcompress.methods.pruner.units import remove_units
from kcompress.core.zoo import build_model


def _sigmoid(w):
    return 1.0 / (1.0 + np.exp(-w))


def test_losses_match_numpy(rng):
    w = rng.normal(0.0, 3.0, size=40).astype(np.float32)
    s = _sigmoid(w.astype(np.float64))
    n = 12
    assert float(G.selection_loss(tf.sigmoid(w), n)) == pytest.approx(abs(s.sum() - n) / 40, rel=1e-5)
    rej = (s * (1 - s)).sum() / 40
    assert float(G.rejection_loss(tf.sigmoid(w), w, "sum")) == pytest.approx(rej, rel=1e-5)
    w_open = np.full(8, 2.0, np.float32)  # product term only matters when most gates are open
    s_open = _sigmoid(w_open.astype(np.float64))
    want = (s_open * (1 - s_open)).sum() / 8 + np.prod(s_open)
    assert float(G.rejection_loss(tf.sigmoid(w_open), w_open, "product")) == pytest.approx(want, rel=1e-5)


def test_penalty_is_mu_lambda_sum_over_layers(reference):
    gated, gates = G.add_gates(reference.model, ["dense_1", "dense_2"])
    penalty = G.PrunerPenalty(gates, {"dense_1": 105, "dense_2": 35}, lam=100.0, mu=0.5)
    want = 0.0
    for name, n in (("dense_1", 105), ("dense_2", 35)):
        s = _sigmoid(gates[name].w.numpy().astype(np.float64))
        want += abs(s.sum() - n) / len(s) + (s * (1 - s)).sum() / len(s)
    assert float(penalty()) == pytest.approx(50.0 * want, rel=1e-5)


def test_gates_start_open_and_sit_after_per_unit_layers(reference):
    gated, gates = G.add_gates(reference.model, ["dense_1", "dense_2"])
    for gate in gates.values():
        assert np.all(gate.values().numpy() > 0.98)
    assert [l.name for l in gated.layers][2:4] == ["dense_1", "dense_1_gate"]
    conv = build_model("convnet", (28, 28), 10)
    assert G.gate_position(conv, "conv_1") == "act_1"  # after batch-norm and activation, not before


def test_gated_model_saves_and_loads_in_safe_mode(reference, tmp_path):
    gated, gates = G.add_gates(reference.model, ["dense_2"])
    gates["dense_2"].w.assign(np.linspace(-3, 3, 100).astype(np.float32))
    gated.save(tmp_path / "gated.keras")
    back = keras.models.load_model(tmp_path / "gated.keras", compile=False, safe_mode=True)
    x = reference.data.x_test[:16]
    np.testing.assert_allclose(back.predict(x, verbose=0), gated.predict(x, verbose=0), atol=1e-6)


def _close_all_but(gates, targets, rng):
    """Set gate weights to random ±values with exactly ``targets[layer]`` open; return the open sets."""
    kept = {}
    for name, gate in gates.items():
        width = gate.w.shape[0]
        idx = np.sort(rng.choice(width, targets[name], replace=False))
        w = -rng.uniform(0.5, 6.0, width)
        w[idx] = rng.uniform(0.5, 6.0, len(idx))
        gate.w.assign(w.astype(np.float32))
        kept[name] = idx.tolist()
    return kept


@pytest.mark.parametrize("model_name, targets", [
    ("lenet300", {"dense_1": 105, "dense_2": 35}),
    ("convnet", {"conv_1": 5, "conv_2": 11, "dense_1": 40}),
])
def test_removal_computes_the_hard_gated_model(model_name, targets, reference, rng):
    if model_name == "lenet300":
        model = reference.model
    else:
        model = build_model("convnet", (28, 28), 10)
        for bn in ("bn_1", "bn_2"):  # non-trivial batch-norm statistics, so slicing them matters
            layer = model.get_layer(bn)
            layer.set_weights([rng.uniform(0.5, 2, w.shape).astype(np.float32) for w in layer.get_weights()])
    gated, gates = G.add_gates(model, list(targets))
    kept = _close_all_but(gates, targets, rng)
    penalty = G.PrunerPenalty(gates, targets)
    assert G.kept_units(penalty) == kept
    pruned = remove_units(G.strip_gates(gated), kept)
    x = reference.data.x_test[:128]
    want = G.harden(gated).predict(x, verbose=0)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), want, atol=2e-5)
    for name, n in targets.items():
        assert pruned.get_layer(name).get_weights()[0].shape[-1] == n
    assert not any(isinstance(l, G.Gate) for l in pruned.layers)
    assert pruned.count_params() < model.count_params()


def test_removal_rejects_the_output_layer(reference):
    from kcompress.errors import UsageError

    with pytest.raises(UsageError, match="output layer"):
        remove_units(reference.model, {"dense_3": [0, 1]})


def test_schedule_raises_lambda_on_time_and_on_stall():
    sched = LambdaMuSchedule(PrunerSettings.from_dict(dict(lambda_every=3, lambda_max=100.0, lambda_rule="schedule",
                                                           mu="adaptive", mu_window=2)))
    assert sched.start(task_loss=2.0, pruning_loss=1.0) == (1.0, 2.0)
    lams = [sched.end_epoch(e, 4.0, 1.0, np.full(5, 0.9))[0] for e in range(12)]
    assert lams == [1, 1, 10, 10, 10, 100, 100, 100, 100, 100, 100, 100]
    assert sched.current_mu() == pytest.approx(4.0)  # ⟨L_task⟩/⟨L_pru⟩ over the last 2 epochs
    stall = LambdaMuSchedule(PrunerSettings.from_dict(dict(lambda_every=100, stall_window=3, mu=0.5)))
    stall.start(1.0, 1.0)
    lams = [stall.end_epoch(e, 1.0, 1.0, np.full(5, 0.9))[0] for e in range(6)]
    assert lams == [1, 1, 10, 10, 10, 100]  # gates not moving: λ ×10 once the window is full
    assert stall.current_mu() == 0.5


def test_markov_updates_never_increase_total_loss(reference):
    from kcompress.training.config import TrainConfig
    from kcompress.training.loop import compile_model

    gated, gates = G.add_gates(reference.model, ["dense_1", "dense_2"])
    penalty = G.PrunerPenalty(gates, {"dense_1": 105, "dense_2": 35}, lam=1.0, mu=0.01)
    trainer = G.GateTrainer(gated, penalty, mode="markov", delta=0.5)
    compile_model(trainer, reference.data, TrainConfig())
    x, y = reference.data.x_train, reference.data.y_train
    accepted = 0
    for i in range(30):
        batch = slice(64 * i, 64 * (i + 1))
        old = [v.numpy() for v in penalty.variables]
        before, after = trainer.markov_gate_step(x[batch], y[batch])
        assert float(after) <= float(before)
        now = float(trainer.total_loss(x[batch], y[batch]))
        assert now == pytest.approx(float(after), rel=1e-5, abs=1e-7)
        moved = any(not np.array_equal(a, v.numpy()) for a, v in zip(old, penalty.variables))
        accepted += moved
        assert moved == (float(after) < float(before))
    assert 0 < accepted < 30


def _small(reference):
    d = reference.data
    return dataclasses.replace(reference, data=dataclasses.replace(d, x_train=d.x_train[:500], y_train=d.y_train[:500]))


@pytest.mark.parametrize("mode", ["gradient", "markov"])
def test_run_keeps_exactly_n_units(reference, mode):
    from kcompress.pipeline import clone
    from kcompress.methods.pruner import method as pruner
    from kcompress.methods.pruner.settings import PrunerSettings

    ref = _small(reference)
    ref = dataclasses.replace(ref, model=clone(ref.model), train=dataclasses.replace(ref.train, verbose=0))
    settings = dict(keep_units="dense_1=30,dense_2=10", pruner_optimizer=mode, max_epochs=8, lambda_every=2,
                    gate_lr=0.1, epochs=1)
    result = pruner.run(ref, PrunerSettings.from_dict(settings))
    assert [l.units for l in result.model.layers if isinstance(l, keras.layers.Dense)] == [30, 10, 10]
    rec = result.record
    assert {k: len(v) for k, v in rec["kept_units"].items()} == {"dense_1": 30, "dense_2": 10}
    assert rec["gate_epochs"] <= 8 and len(result.history["l_sel"]) == rec["gate_epochs"] + 1
    for key in ("l_sel", "l_rej", "lam", "mu", "open_gates", "gate_motion", "open_dense_1"):
        assert key in result.history
    assert result.history["lam"][0] == 1.0 and max(result.history["lam"]) > 1.0
    if mode == "gradient":  # with a fast gate lr the gates do get pushed shut
        assert result.history["open_gates"][rec["gate_epochs"] - 1] < 400


@pytest.mark.parametrize("flags, message", [
    (["--keep", "1.5"], "--keep must be in (0, 1]"),
    (["--keep", "0"], "--keep must be in (0, 1]"),
    (["--keep-units", "nosuch=3"], "no layer named nosuch"),
    (["--layers", "nosuch"], "no layer named nosuch"),
    (["--keep-units", "dense_1=301"], "dense_1=301 must be in 1..300"),
    (["--keep-units", "dense_3=5"], "the output layer's units cannot be removed"),
    (["--mu", "foo"], "--mu 'foo': expected adaptive or balanced or a number"),
])
def test_bad_input_exits_2(reference_dir, tmp_path, capsys, flags, message):
    from kcompress.cli.main import main

    out = str(tmp_path / "o")
    code = main(["compress", "--from", str(reference_dir), "--method", "pruner", "--out", out, *flags])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
