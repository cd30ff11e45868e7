"""Pruner gates (methods/pruner/gates.py): the selection and rejection losses (note 003's sum and
product forms), the penalty over layers, where gates sit, saving a gated model, Markov-chain updates."""
import numpy as np
import pytest

from kcompress.backend import keras, tf
from kcompress.core.zoo import build_model
from kcompress.methods.pruner import gates as G


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


def test_product_rejection_adds_the_product_of_the_gates():
    """Note 003's [Σσ(1−σ) + N·Πσ]/N at N = 2, w = (0, ln 3): σ = (1/2, 3/4), Σσ(1−σ) = 1/4 + 3/16 = 7/16,
    Πσ = 3/8: L_rej = (7/16 + 2·3/8)/2 = 19/32 (sum: 7/32)."""
    w = np.array([0.0, np.log(3.0)], np.float32)
    assert float(G.rejection_loss(tf.sigmoid(w), w, "product")) == pytest.approx(19 / 32, rel=1e-6)
    assert float(G.rejection_loss(tf.sigmoid(w), None, "sum")) == pytest.approx(7 / 32, rel=1e-6)


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


def _rejection(sigma, rejection):
    w = np.log(np.asarray(sigma, np.float64) / (1 - np.asarray(sigma, np.float64))).astype(np.float32)
    return float(G.rejection_loss(tf.sigmoid(w), w, rejection))


def test_product_rejection_loss_is_note_003s_at_three_gates_of_one_half():
    # Σσ(1−σ)/N = 3·0.25/3 = 0.25, Πσ = 0.125: L_rej = [0.75 + 3·0.125]/3 = 0.375 (not 0.625)
    assert _rejection([0.5] * 3, "sum") == pytest.approx(0.25, abs=1e-6)
    assert _rejection([0.5] * 3, "product") == pytest.approx(0.375, abs=1e-6)


def test_product_rejection_loss_is_note_003s_at_300_open_gates():
    # σ = 0.982: Σσ(1−σ)/N = 0.982·0.018 = 0.017676, Πσ = 0.982^300 = 0.0043: L_rej = 0.0220 (not 1.32)
    assert _rejection([0.982] * 300, "sum") == pytest.approx(0.017676, abs=2e-6)
    assert _rejection([0.982] * 300, "product") == pytest.approx(0.0220, abs=5e-5)
