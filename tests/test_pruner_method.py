"""The pruner method end to end (methods/pruner/method.py): exact kept units in both modes, the gate phase's
learning rate, training on the pruning loss alone, learned-index keys, sweeps and bad input from the command line."""
import dataclasses
import json

import numpy as np
import pytest

from kcompress.backend import keras
from kcompress.methods.pruner.settings import PrunerSettings


SMALL = dict(keep_units="dense_1=30,dense_2=10", gate_lr=0.1, lambda_every=2, lr=0.01, epochs=0)


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
