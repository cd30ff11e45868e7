"""Pruner masks: the product rejection term (note 003's), the λ rules, the gate phase's learning rate,
training on the pruning loss alone, and sweeps of every sweepable setting from the command line."""
import dataclasses
import json

import numpy as np
import pytest

from kcompress.backend import keras, tf
from kcompress.methods.pruner import gates as G
from kcompress.methods.pruner.schedule import LambdaMuSchedule, closed_share
from kcompress.methods.pruner.settings import PrunerSettings

SMALL = dict(keep_units="dense_1=30,dense_2=10", gate_lr=0.1, lambda_every=2, lr=0.01, epochs=0)


def test_product_rejection_adds_the_product_of_the_gates():
    """Note 003's [Σσ(1−σ) + N·Πσ]/N at N = 2, w = (0, ln 3): σ = (1/2, 3/4), Σσ(1−σ) = 1/4 + 3/16 = 7/16,
    Πσ = 3/8: L_rej = (7/16 + 2·3/8)/2 = 19/32 (sum: 7/32)."""
    w = np.array([0.0, np.log(3.0)], np.float32)
    assert float(G.rejection_loss(tf.sigmoid(w), w, "product")) == pytest.approx(19 / 32, rel=1e-6)
    assert float(G.rejection_loss(tf.sigmoid(w), None, "sum")) == pytest.approx(7 / 32, rel=1e-6)


def _schedule(**settings):
    return LambdaMuSchedule(PrunerSettings.from_dict(settings))


@pytest.mark.parametrize("size, c", [("none", 1.0), ("units", 40.0)])
def test_size_coefficient_multiplies_the_pruning_loss_by_the_gated_units(size, c):
    """Note 004's coefficient tied to the network's size. Two layers of N = 30 (keep 10) and 10 (keep 5), all
    σ = 1/2 (w = 0): L_sel = |15 − 10|/30 + |5 − 5|/10 = 1/6, L_rej = 1/4 + 1/4 = 1/2, L_pru = 2/3; with
    μ = 0.5 and λ = 3, the penalty is c·0.5·3·2/3 = c with c = 30 + 10 = 40 for units."""
    from kcompress.methods.pruner.schedule import PrunerCallback

    gates = {name: G.Gate(init=0.0, name=name) for name in ("a", "b")}
    for gate, width in zip(gates.values(), (30, 10)):
        gate.build((None, width))
    penalty = G.PrunerPenalty(gates, {"a": 10, "b": 5})
    callback = PrunerCallback(penalty, _schedule(mu=0.5, lambda_start=3.0, size_coefficient=size), 0.01, 1.0)
    callback.on_train_begin()
    assert float(penalty.pruning_loss()) == pytest.approx(2 / 3, rel=1e-6)
    assert float(penalty()) == pytest.approx(c, rel=1e-6)


def test_slope_rule_raises_lambda_in_inverse_proportion_to_the_change_of_l_pru():
    sched = _schedule(lambda_every=100, lambda_rule="slope", slope_scale=1e-3, mu=1.0)
    sched.start(task_loss=1.0, pruning_loss=1.0)
    changes = [0.1, 5e-4, 1e-5, 0.0]  # no raise; ×c/Δ = ×2; ×10 (capped at the factor); ×10
    l_pru = 1.0 - np.cumsum(changes)
    lams = [sched.end_epoch(e, 1.0, p, np.full(3, 0.5))[0] for e, p in enumerate(l_pru)]
    assert lams == pytest.approx([1.0, 2.0, 20.0, 200.0], rel=1e-6)
    assert [why for *_, why in sched.raises] == ["slope"] * 3
    timed = _schedule(lambda_every=2, lambda_rule="slope", slope_scale=1e-3, mu=1.0)
    timed.start(1.0, 1.0)
    assert [timed.end_epoch(e, 1.0, 1.0 - 0.5 * (e + 1), np.zeros(3))[0] for e in range(4)] == [1, 10, 10, 100]


def test_schedule_rule_ignores_stalled_gates():
    sched = _schedule(lambda_every=100, stall_window=2, lambda_rule="schedule", mu=1.0)
    sched.start(1.0, 1.0)
    assert [sched.end_epoch(e, 1.0, 1.0, np.full(5, 0.9))[0] for e in range(6)] == [1.0] * 6


def test_closed_share_counts_the_gates_due_to_close():
    # a: 10 of 10 open, keep 4 (6 due, 0 closed); b: 4 of 8 open, keep 2 (6 due, 4 closed)
    assert closed_share({"a": 10, "b": 4}, {"a": 10, "b": 8}, {"a": 4, "b": 2}) == pytest.approx(4 / 12)
    assert closed_share({"a": 3}, {"a": 3}, {"a": 3}) == 1.0


def _run(reference, **settings):
    from kcompress.methods.pruner import method as pruner
    from kcompress.pipeline import clone

    d = reference.data
    data = dataclasses.replace(d, x_train=d.x_train[:500], y_train=d.y_train[:500])
    ref = dataclasses.replace(reference, model=clone(reference.model), data=data,
                              train=dataclasses.replace(reference.train, verbose=0))
    return pruner.run(ref, PrunerSettings.from_dict(settings))


def test_gate_phase_step_schedule_lowers_the_network_lr(reference):
    result = _run(reference, **SMALL, max_epochs=4, gate_epsilon=1e-9, gate_lr_schedule="step", step_size=2,
                  gamma=0.5)
    assert result.history["lr"] == pytest.approx([0.01, 0.01, 0.005, 0.005])


def test_on_pruning_drops_the_lr_once_when_the_share_has_closed(reference):
    result = _run(reference, **SMALL, max_epochs=6, gate_epsilon=1e-9, gate_lr_schedule="on-pruning",
                  lr_drop_share=0.1, gamma=0.1, lambda_start=100.0)
    hist, dropped = result.history, result.record["lr_dropped_epoch"]
    assert dropped is not None and dropped < 6, hist["open_gates"]
    due = 400 - 40
    first = next(e for e, n in enumerate(hist["open_gates"], 1) if (400 - n) / due >= 0.1)
    assert dropped == first
    assert hist["lr"] == pytest.approx([0.01] * dropped + [0.001] * (6 - dropped))


def test_pruning_loss_only_moves_the_gates_alone(reference):
    """Also the slope rule end to end: c = 10 exceeds any change of L_pru, so λ ×10 each epoch."""
    result = _run(reference, **SMALL, max_epochs=4, gate_epsilon=1e-9, pruning_loss_only=True,
                  gate_init_spread=0.5, lambda_rule="slope", slope_scale=10.0, lambda_max=1e3)
    hist, kept = result.history, result.record["kept_units"]
    assert hist["l_pru"][-1] < hist["l_pru"][0]
    assert hist["l_pru"] == pytest.approx(np.add(hist["l_sel"], hist["l_rej"]).tolist())
    assert hist["lam"] == [1.0, 10.0, 100.0, 1000.0]
    assert {r["why"] for r in result.record["lambda_raises"]} == {"slope"}
    w_ref = reference.model.get_layer("dense_1").get_weights()[0]
    w_new = result.model.get_layer("dense_1").get_weights()[0]
    np.testing.assert_array_equal(w_new, w_ref[:, kept["dense_1"]])  # the network weights did not move


@pytest.fixture(scope="module")
def keys_reference(tmp_path_factory):
    from kcompress import api
    from kcompress.pipeline import load_reference

    out = tmp_path_factory.mktemp("keys") / "index"
    api.train(out, model="index64", data="keys:lognormal:2000", epochs=2, seed=0, verbose=0)
    return load_reference(out)


def test_new_modes_run_on_learned_index_keys(keys_reference):
    from kcompress.methods.pruner import method as pruner

    ref = dataclasses.replace(keys_reference, train=dataclasses.replace(keys_reference.train, verbose=0))
    settings = PrunerSettings.from_dict(dict(keep=0.5, max_epochs=3, epochs=1, gate_lr=0.1, lambda_rule="slope",
                                             gate_lr_schedule="on-pruning", lr_drop_share=0.01, gate_init_spread=0.5,
                                             rejection="product", mu="balanced", size_coefficient="units"))
    result = pruner.run(ref, settings)
    widths = [l.units for l in result.model.layers if isinstance(l, keras.layers.Dense)]
    assert widths[:-1] == [n for n in result.record["targets"].values()] and widths[-1] == 1
    assert np.isfinite(result.history["l_pru"][:result.record["gate_epochs"]]).all()


def _sweep_values(field):
    """Two valid values of a sweepable pruner setting, as a comma list."""
    special = {"mu": "adaptive,0.5", "batch_size": "32,64", "momentum": "0.5,0.9", "optimizer": "sgd,adam"}
    if field.name in special:
        return special[field.name]
    if field.metadata.get("choices"):
        return ",".join(field.metadata["choices"][:2])
    d = field.default
    return f"{d},{d * 2 if d else 1}"


def test_every_sweepable_setting_sweeps_from_the_command_line(reference_dir):
    from kcompress.cli.main import parse
    from kcompress.core.settings import expand

    base = ["compress", "--from", str(reference_dir), "--method", "pruner", "--out", "x"]
    for field in PrunerSettings.options():
        if field.metadata.get("sweep"):
            flag = "--" + field.name.replace("_", "-")
            command, values = parse(base + [flag, _sweep_values(field)])
            values = {k: v for k, v in values.items() if k not in ("from_dir", "method", "out")}
            assert len(expand(PrunerSettings, values)) == 2, field.name


def test_rejection_sweep_from_the_command_line_writes_two_models(reference_dir, tmp_path):
    from kcompress.cli.main import main

    out = tmp_path / "sweep"
    argv = ["compress", "--from", str(reference_dir), "--method", "pruner", "--rejection", "sum,product",
            "--keep-units", "dense_1=30,dense_2=10", "--max-epochs", "2", "--epochs", "1", "--batch-size", "1000",
            "--out", str(out)]
    assert main(argv) == 0
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*/run.json"))]
    assert sorted(r["settings"]["rejection"] for r in runs) == ["product", "sum"]
    assert (out / "sweep.md").exists()
