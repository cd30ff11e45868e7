"""Your data, end to end: a tabular npz with a Keras model object of the user's (built and fitted in
Python, never saved), and an SOSD key file with a model kcompress trains, go through every method →
evaluate → export (both formats pass the check) → compress again, with no data after the first
compression: each model directory carries its data spec."""
import json

import numpy as np
import pytest

from kcompress import api

TINY = {  # method: the shortest settings that exercise it
    "prune": {"sparsity": 0.5, "epochs": 1},
    "cluster": {"clusters": 4, "epochs": 1},
    "prune+cluster": {"sparsity": 0.5, "clusters": 4, "epochs": 1, "cluster_epochs": 1},
    "lc": {"task": ["each:quant:k=4"], "mu0": 1e-2, "mu_factor": 10, "mu_steps": 2, "l_epochs": 1},
    "pruner": {"keep": 0.5, "max_epochs": 2, "epochs": 1},
    "alpha": {"alpha_schedule": "list", "alpha_list": "0.5", "epochs_per_alpha": 1, "epochs": 1},
}


def tabular(folder):
    """A 20-feature, 3-class npz (the Keras dataset layout) and a softmax MLP object fitted to it with Keras's
    own ``fit``, as a user's script would."""
    from kcompress.backend import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(360, 20)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    path = folder / "tab.npz"
    np.savez(path, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    inputs = keras.Input((20,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(keras.layers.Dense(16, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(hidden), name="users_mlp")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:300], y[:300], epochs=2, verbose=0)
    return str(path), model


def sosd_keys(folder):
    """An SOSD binary key file (uint64 count, then the keys) of 500 lognormal keys."""
    keys = np.unique((np.random.default_rng(1).lognormal(0, 2, 600) * 1e12).astype(np.uint64))[:500]
    path = folder / "keys_uint64"
    np.concatenate([[np.uint64(len(keys))], keys]).astype("<u8").tofile(path)
    setup = dict(model="index64", hidden="16,16", loss="lse", optimizer="adam", lr=3e-3)
    api.train(folder / "ref", data=f"keys-file:{path}", epochs=2, verbose=0, **setup)
    return f"keys-file:{path}", folder / "ref"


@pytest.mark.parametrize("make, methods", [(tabular, tuple(TINY)), (sosd_keys, ("prune+cluster", "lc", "pruner"))])
def test_every_method_runs_on_user_data_and_every_result_exports(tmp_path, make, methods):
    """Every method on the tabular data, then a chain (cluster the pruner's model) and its export; on keys
    the methods whose code paths differ for regression (the other methods' key runs are in
    tests/test_report.py, test_auto.py and test_pruner_method.py)."""
    data, source = make(tmp_path)
    metric = "max_error" if make is sosd_keys else "test_error"
    for method in methods:
        settings = TINY[method]
        out = tmp_path / method.replace("+", "_")
        record = api.compress(source, method, out, data=data, **settings)
        assert record["data_spec"]["data"] == data and np.isfinite(record["metrics"][metric])
        assert api.evaluate(out)[metric] == pytest.approx(record["metrics"][metric], rel=1e-5)
    if make is sosd_keys:
        return  # the chain and the export below take the same paths on keys
    again = api.compress(tmp_path / "pruner", "cluster", tmp_path / "again", **TINY["cluster"])
    assert again["parent"] == str(tmp_path / "pruner") and again["data_spec"]["data"] == data
    report = api.export(tmp_path / "again", tmp_path / "exported", tflite_modes="float32")
    assert report["passed"] and {f["variant"] for f in report["files"]} == {"tflite-float32", "onnx"}
    assert json.loads((tmp_path / "exported" / "report.json").read_text())["data"] == data
