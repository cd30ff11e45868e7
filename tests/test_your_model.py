"""Your model: a Keras model kcompress never trained — its file, its graph, its loss — as the reference.

Models and data come from tests/usermodels.py (a residual CNN with batch-norm and a softmax head, a
sigmoid binary MLP, a regression MLP, one-hot labels)."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

import usermodels as um
from kcompress import api
from kcompress.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images():
    return um.image_arrays(n_train=1500, n_test=500)


@pytest.fixture(scope="module")
def cnn(images):
    """The residual CNN trained 4 epochs with its own compiled loss (probabilities: softmax head)."""
    return um.trained(um.residual_cnn(), images, "sparse_categorical_crossentropy", epochs=4, lr=3e-3)


@pytest.fixture(scope="module")
def cnn_files(cnn, images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mine")
    cnn.save(folder / "my.keras")
    cnn.save(folder / "my.h5")
    return folder, um.save_npz(folder / "img.npz", images)


def _loss_and_drop(model, data, **source):
    """The reference's Keras loss object, its value on the training split before and after 3 epochs
    of the shared training loop, and the loss Keras itself computes for the same head."""
    from kcompress.core.batchnorm import recalibrate
    from kcompress.core.objectives import get_loss
    from kcompress.core.surgery import clone
    from kcompress.pipeline import load_reference
    from kcompress.training.loop import fit

    ref = load_reference(model, data, **source)
    loss = get_loss(ref.train.loss, ref.data)
    trainee = clone(ref.model)

    def value():
        return float(loss(ref.data.y_train, trainee.predict(ref.data.x_train, verbose=0)))

    before = value()
    fit(trainee, ref.data, ref.train.replace(epochs=3, lr=3e-3, optimizer="adam", verbose=0))
    # batch-norm's moving statistics lag 72 steps behind the weights (momentum 0.99): measure them anew
    recalibrate(trainee, ref.data.x_train)
    return ref, loss, before, value()


def test_softmax_integer_labels_use_the_probabilities_loss(cnn, images):
    from kcompress.backend import keras

    ref, loss, before, after = _loss_and_drop(cnn, images)
    assert ref.data.head == "softmax" and ref.run.objective_of("loss") == "xent"
    assert ref.run.objective_of("loss_from") == "compiled into the model"
    assert isinstance(loss, keras.losses.SparseCategoricalCrossentropy) and not loss.get_config()["from_logits"]
    probs = cnn.predict(ref.data.x_train, verbose=0)  # never a softmax on a softmax: the value is Keras' own
    expected = float(keras.losses.sparse_categorical_crossentropy(ref.data.y_train, probs).numpy().mean())
    assert before == pytest.approx(expected, rel=1e-4) and after < before


def test_softmax_one_hot_labels_are_read_as_classes(cnn, images):
    ref, _, before, after = _loss_and_drop(cnn, um.one_hot(images))
    assert ref.data.task == "classification" and ref.data.num_classes == 10 and ref.data.y_train.ndim == 1
    assert ref.run.dataset["labels"].startswith("one-hot") and after < before
    assert ref.run.metric("test_error") == pytest.approx(api.evaluate(cnn, images)["test_error"])


def test_logits_head(images):
    model = um.trained(um.residual_cnn(softmax=False), images, "sparse_categorical_crossentropy", epochs=1)
    ref, loss, before, after = _loss_and_drop(model, images)
    assert ref.data.head == "logits" and loss.get_config()["from_logits"] and after < before


def test_sigmoid_binary_classifier():
    from kcompress.backend import keras

    arrays = um.tabular_arrays()
    model = um.trained(um.sigmoid_mlp(), arrays, "binary_crossentropy", epochs=3)
    ref, loss, before, after = _loss_and_drop(model, arrays)
    assert ref.data.head == "sigmoid" and ref.data.num_classes == 2
    assert isinstance(loss, keras.losses.BinaryCrossentropy) and not loss.get_config()["from_logits"]
    p = model.predict(arrays["x_test"], verbose=0)[:, 0]
    expected = 100 * np.mean((p > 0.5) != arrays["y_test"])  # threshold 0.5 on the one unit
    assert ref.run.metric("test_error") == pytest.approx(expected) and after < before
    floats = {**arrays, **{k: arrays[k].astype(np.float32) for k in ("y_train", "y_test")}}
    assert _loss_and_drop(model, floats)[0].data.head == "sigmoid"  # 0.0/1.0 targets: the same two classes


def test_regression_uses_mse_and_reports_it():
    arrays = um.regression_arrays()
    model = um.trained(um.regression_mlp(), arrays, "mse", epochs=3)
    ref, loss, before, after = _loss_and_drop(model, arrays)
    assert ref.data.head == "linear" and ref.run.objective_of("metric") == "mse" and after < before
    mse = float(np.mean((model.predict(arrays["x_test"], verbose=0) - arrays["y_test"]) ** 2))
    assert ref.run.metric("mse") == pytest.approx(mse, rel=1e-4)
    assert _loss_and_drop(model, arrays, loss="mae")[0].train.loss == "mae"  # --loss wins over the file's


def test_compress_a_model_object_with_arrays_writes_nothing(cnn, images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = api.compress(cnn, "prune", data=images, sparsity=0.5, epochs=1)
    kernels = [w for layer in result.model.layers for w in layer.weights if "kernel" in w.name]
    assert all(np.mean(k.numpy() == 0) == pytest.approx(0.5, abs=0.02) for k in kernels)
    assert result.reference_metrics["test_error"] == pytest.approx(api.evaluate(cnn, images)["test_error"])
    assert result.folder is None and result.compression["total"]["bits_ratio"] > 1.5
    assert result["source"]["path"] == cnn.name and list(tmp_path.iterdir()) == []
    assert result.metrics["test_error"] < 90  # better than chance: the softmax head was fine-tuned as such


def test_compress_evaluate_export_from_files(cnn_files, tmp_path):
    folder, npz = cnn_files
    out = tmp_path / "my_keras"
    assert main(["compress", "--from", str(folder / "my.keras"), "--data", npz, "--method", "prune", "--sparsity", "0.5",
                 "--epochs", "1", "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["source"]["path"] == str(folder / "my.keras") and run["data_spec"]["data"] == npz
    assert run["objective"]["head"] == "softmax" and run["parent"] == str(folder / "my.keras")
    # the .h5 file loads into the same reference (import, below, compresses from it)
    h5, keras_file = api.evaluate(folder / "my.h5", data=npz), api.evaluate(folder / "my.keras", data=npz)
    assert h5["test_error"] == pytest.approx(keras_file["test_error"]) and h5["model"] == str(folder / "my.h5")
    again = api.compress(tmp_path / "my_keras", "cluster", tmp_path / "chain", clusters=4, epochs=1)
    assert again["source"]["path"] == str(folder / "my.keras") and again["objective"]["loss"] == "xent"
    assert api.evaluate(tmp_path / "chain")["test_error"] == pytest.approx(again.metrics["test_error"])
    report = api.export(folder / "my.keras", tmp_path / "exported", data=npz, tflite_modes="float32")
    assert report["passed"] and report["from"] == str(folder / "my.keras")


def test_import_writes_a_reference_directory(cnn_files, tmp_path):
    folder, npz = cnn_files
    assert main(["import", str(folder / "my.h5"), "--data", npz, "--out", str(tmp_path / "mine")]) == 0
    run = json.loads((tmp_path / "mine" / "run.json").read_text())
    assert run["kind"] == "import" and run["objective"]["head"] == "softmax"
    record = api.compress(tmp_path / "mine", "prune", tmp_path / "p", sparsity=0.5, epochs=1)
    assert record["reference_metrics"]["test_error"] == pytest.approx(run["metrics"]["test_error"])
    assert record["data_spec"]["data"] == npz and record["parent"] == str(tmp_path / "mine")


def _fails(capsys, argv, needle, out):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and needle in err, err
    assert not Path(out).exists()


def test_bad_model_files_and_data(capsys, cnn_files, tmp_path):
    from kcompress.backend import keras

    folder, npz = cnn_files
    out = tmp_path / "out"
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    lam = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(2)])
    lam.save(tmp_path / "lambda.keras")
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "model.keras").write_bytes((folder / "my.keras").read_bytes())
    small = um.save_npz(tmp_path / "small.npz", um.tabular_arrays())
    custom = _with_unknown_layer(folder / "my.keras", tmp_path / "custom.keras")
    cases = [
        ([str(custom), "--data", npz], "Keras cannot load it"),
        ([str(text), "--data", npz], "not a Keras model file"),
        ([str(tmp_path / "lambda.keras"), "--data", small], "Lambda layer"),
        ([str(folder / "my.keras")], "give --data"),
        ([str(folder / "my.keras"), "--data", small], "do not fit the model's input"),
        ([str(alone), "--data", npz], "give the file itself"),
        ([str(tmp_path / "missing.keras"), "--data", npz], "no such file or directory"),
    ]
    for (source, *rest), needle in cases:
        _fails(capsys, ["compress", "--from", source, *rest, "--method", "prune", "--out", str(out)], needle, out)
    _fails(capsys, ["import", str(folder / "my.keras"), "--data", npz, "--metric", "mse", "--out", str(out)],
           "does not fit classification", out)


def _with_unknown_layer(source, target):
    """A copy of the ``.keras`` file ``source`` whose head layer is of a class nobody registered."""
    import zipfile

    with zipfile.ZipFile(source) as z, zipfile.ZipFile(target, "w") as out:
        for item in z.infolist():
            data = z.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][-1]["class_name"] = "MysteryDense"
                config["config"]["layers"][-1]["module"] = "my_own_layers"
                data = json.dumps(config).encode()
            out.writestr(item, data)
    return target


def test_readme_python_example_runs(cnn_files, tmp_path, monkeypatch):
    """The README's Python example, as written (its file names made here)."""
    folder, npz = cnn_files
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.keras").write_bytes((folder / "my.keras").read_bytes())
    (tmp_path / "my.npz").write_bytes(Path(npz).read_bytes())
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("epochs=2", "epochs=1")
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "exported" / "pruned" / "report.json").is_file()


def test_staged_fixed_sharing_on_a_users_residual_cnn(cnn, images, tmp_path, monkeypatch):
    """--assignments fixed --fixed-stages 2 on convolution kernels beside batch-norm and an Add: every kernel ends
    with at most K values, and the fine-tuned softmax head stays better than chance."""
    monkeypatch.chdir(tmp_path)
    result = api.compress(cnn, "cluster", data=images, clusters=4, assignments="fixed", fixed_stages=2, epochs=2)
    kernels = [w.numpy() for layer in result.model.layers for w in layer.weights if "kernel" in w.name]
    assert kernels and all(len(np.unique(k)) <= 4 for k in kernels)
    assert result["method"]["clustering"]["fixed_stages"] == 2 and result.metrics["test_error"] < 90
