"""Quantization-aware training: the int8 file agrees with the plain Keras model and holds its kernels,
zeros and shared values survive into the int8 weights, batch-norm and custom layers, the flags, and the
int8 storage encoding."""
import re
from dataclasses import replace

import numpy as np
import pytest

import usermodels as um
from kcompress.backend import keras
from kcompress.cli.main import main
from kcompress.core.stats import array_bits, on_int8_grid
from kcompress.methods.qat import method as qat
from kcompress.methods.qat.settings import QATSettings
from kcompress.methods.tfmot import cluster, prune
from kcompress.methods.tfmot.settings import ClusterSettings, PruneSettings
from kcompress.pipeline import clone
from test_tfmot import KERNELS, QUICK


def run_qat(ref, model=None, **settings):
    return qat.run(replace(ref, model=clone(ref.model if model is None else model)),
                   QATSettings.from_dict({**QUICK, **settings}))


def int8_kernels(blob):
    """``{layer: (int8 kernel in Keras' (inputs, units) layout, its scales)}`` of the Dense weights as the
    TFLite file stores them, read back in LiteRT: the int8 constants of each layer's MatMul (an activation
    tensor has no data before a run)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=blob)
    found = {}
    for d in interp.get_tensor_details():
        name = re.search(r"quant_(dense_\d)/MatMul", d["name"])
        if name and d["dtype"] == np.int8 and len(d["shape"]) == 2:
            try:
                found[name.group(1)] = interp.get_tensor(d["index"]).T, d["quantization_parameters"]["scales"]
            except ValueError:
                continue
    assert sorted(found) == sorted(KERNELS)
    return found


def test_the_int8_file_agrees_with_the_plain_model_and_stores_its_kernels(reference_dir, tmp_path):
    """End to end: ``model_int8.tflite`` beside the model, checked on the whole test split; the plain model's
    kernels are the file's int8 weights times their scale (one per Dense kernel in tfmot's scheme)."""
    from kcompress import api

    record = api.compress(reference_dir, "qat", tmp_path / "q", epochs=1, batch_size=500)
    blob = (tmp_path / "q" / qat.INT8_FILE).read_bytes()
    deployed = record["method"]["deploy"]["tflite_int8"]
    assert deployed["bytes"] == len(blob) and deployed["gzip_bytes"] < len(blob)
    assert deployed["agreement"] >= 0.98
    assert abs(deployed["value"] - record["metrics"]["test_error"]) <= 1.0
    assert record["method"]["preserve"] == "none" and record["method"]["layers"]["float"] == []
    model = keras.models.load_model(tmp_path / "q" / "model.keras", compile=False, safe_mode=True)
    for name, (k, scales) in int8_kernels(blob).items():
        assert len(np.unique(scales)) == 1 and np.abs(k).max() <= 127
        np.testing.assert_allclose(model.get_layer(name).kernel.numpy(), k * scales[0], rtol=0, atol=1e-6)
        assert record["compression"]["layers"][KERNELS.index(name)]["arrays"]["kernel"]["distinct"] <= 255
    assert (tmp_path / "q" / qat.ONNX_FILE).is_file() and record["method"]["deploy"]["onnx_qdq"]["agreement"] >= 0.98
    assert record["compression"]["total"]["bits_ratio"] > 3.5  # 8-bit kernels, float biases


def test_a_pruned_model_keeps_its_zeros_in_the_int8_file(small):
    """prune 80 % (tfmot), then qat with --preserve auto: prune-preserving QAT, and every weight pruned to zero
    is zero in the int8 file (rounding can only add zeros)."""
    pruned, _, _ = prune.prune(small, clone(small.model), PruneSettings.from_dict({**QUICK, "sparsity": 0.8}))
    zeros = {name: pruned.get_layer(name).kernel.numpy() == 0 for name in KERNELS}
    result = run_qat(small, pruned)
    assert result.record["preserve"] == "sparsity" and result.resolved["lr"] == 0.05  # the reference's rate
    assert result.record["deploy"]["tflite_int8"]["agreement"] >= 0.95
    for name, (k, _) in int8_kernels(result.files[qat.INT8_FILE]).items():
        assert np.mean(zeros[name]) == pytest.approx(0.8, abs=0.01)
        assert np.all(k[zeros[name]] == 0) and np.mean(k == 0) >= np.mean(zeros[name]), name
        assert np.all(result.model.get_layer(name).kernel.numpy()[zeros[name]] == 0)


def test_a_clustered_model_keeps_at_most_k_values_per_kernel_in_the_int8_file(small):
    """cluster into 4 values (tfmot), then qat: cluster-preserving QAT. A Dense kernel has one scale in the
    file (asserted), so its ≤ 4 shared float values map to ≤ 4 int8 values for the whole kernel; a Conv2D
    kernel would be scaled per output channel, and the bound would hold per channel."""
    clustered, _, _ = cluster.cluster(small, clone(small.model), ClusterSettings.from_dict({**QUICK, "clusters": 4}))
    result = run_qat(small, clustered)
    assert result.record["preserve"] == "clusters"
    # tfmot sums a centroid's gradients: the reference's SGD at 0.05 gives way to Adam at 1e-3, which keeps the model
    assert result.resolved["optimizer"] == "adam" and result.resolved["lr"] == 1e-3
    assert not result.record["execution"]["jit_compile"] and "8x slower" in result.record["execution"]["reason"]
    assert result.record["deploy"]["tflite_int8"]["agreement"] >= 0.95
    assert result.record["deploy"]["tflite_int8"]["value"] < 20  # the reference: 9.6 % on these 500 images
    for name, (k, scales) in int8_kernels(result.files[qat.INT8_FILE]).items():
        assert len(np.unique(scales)) == 1 and len(np.unique(k)) <= 4, name
        assert len(np.unique(result.model.get_layer(name).kernel.numpy())) <= 4


def test_a_users_residual_cnn_with_batch_norm():
    """Conv + batch-norm pairs folded by tfmot, the separable convolution split and mapped back: every layer
    quantized, each kernel of the plain model on a per-channel int8 grid (counted as such), the file close."""
    from kcompress.core.data import Dataset
    from kcompress.core.record import RunRecord
    from kcompress.core.stats import compression_stats
    from kcompress.methods.base import Reference
    from kcompress.training.config import TrainConfig

    images = um.image_arrays(n_train=600, n_test=300)
    cnn = um.trained(um.residual_cnn(), images, "sparse_categorical_crossentropy", epochs=6, lr=1e-2)  # 49 % error
    data = Dataset(name="digits", x_train=images["x_train"], y_train=images["y_train"], x_val=images["x_test"][:32],
                   y_val=images["y_test"][:32], x_test=images["x_test"], y_test=images["y_test"],
                   task="classification", num_classes=10, head="softmax")
    ref = Reference(model=cnn, run=RunRecord(), data=data, train=TrainConfig(verbose=0, optimizer="adam", lr=1e-3))
    split, _ = qat.split_separable(cnn, {"sep"})  # what tfmot quantizes in its place computes the same
    np.testing.assert_allclose(split.predict(data.x_test, verbose=0), cnn.predict(data.x_test, verbose=0), atol=1e-6)
    result = run_qat(ref, epochs=1, batch_size=64)
    layers = result.record["layers"]
    assert layers["float"] == [] and {"stem_bn", "b1_bn1", "b1_bn2", "sep_depthwise", "sep_pointwise"} <= set(
        layers["quantized"])
    assert [w.shape for w in result.model.get_weights()] == [w.shape for w in cnn.get_weights()]
    for name in ("stem", "b1_conv1", "b1_conv2", "head"):
        assert on_int8_grid(result.model.get_layer(name).kernel.numpy()), name
    stats = {r["layer"]: r["arrays"] for r in compression_stats(result.model, cnn)["layers"]}
    assert stats["b1_conv1"]["kernel"]["encoding"] == "int8"  # 576 weights, over 255 values across 8 channels
    # 10 steps leave tfmot's activation ranges near their initial ±6: the file computes as the QAT model (its
    # activations quantized; measured 98 % agreement), the float-activation Keras model less so (79 %)
    deployed = result.record["deploy"]["tflite_int8"]
    assert abs(deployed["value"] - result.record["qat_model"]["test_error"]) <= 3.0 and deployed["agreement"] >= 0.7


class Scale(keras.layers.Layer):
    """A custom layer: tfmot has no quantization config for it."""

    def build(self, shape):
        self.w = self.add_weight(name="w", shape=shape[-1:], initializer="ones")

    def call(self, x):
        return x * self.w


def test_a_layer_tfmot_cannot_quantize_stays_float_with_a_notice(small, capsys, monkeypatch):
    """A custom layer stays float (one line, no traceback), and so does the run when tf2onnx fails: the int8
    file alone, the ONNX row saying why. ``--layers`` naming only float layers is a usage error."""
    from kcompress.errors import UsageError

    x = inputs = keras.Input((28, 28))
    x = keras.layers.Dense(32, activation="relu", name="fc")(keras.layers.Flatten(name="flat")(x))
    model = keras.Model(inputs, keras.layers.Dense(10, name="out")(Scale(name="scale")(x)))
    with pytest.raises(UsageError, match="tfmot quantizes none of scale"):
        run_qat(small, model, layers="scale")

    def refuse(model):
        raise ValueError("tf2onnx cannot\nmore lines")

    monkeypatch.setattr(qat, "to_onnx", refuse)
    result = run_qat(small, model)
    out = capsys.readouterr().out
    assert "[qat] left in float: scale\n" in out and "[qat] no ONNX file: ValueError: tf2onnx cannot\n" in out
    assert result.record["layers"] == {"quantized": ["flat", "fc", "out"], "float": ["scale"]}
    assert list(result.files) == [qat.INT8_FILE] and result.record["deploy"]["onnx_qdq"] == {
        "error": "ValueError: tf2onnx cannot"}
    assert result.model.get_layer("scale").get_weights()[0].shape == (32,)
    assert result.record["deploy"]["tflite_int8"]["agreement"] >= 0.9


def test_preserve_auto_reads_the_kernels():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(100, 20))
    pruned = np.where(np.abs(dense) > 1, dense, 0)  # ~68 % zeros
    shared = rng.choice([-0.5, 0.1, 0.3], size=(100, 20))
    assert qat.resolve_preserve("auto", [dense]) == "none"
    assert qat.resolve_preserve("auto", [dense, pruned]) == "sparsity"
    assert qat.resolve_preserve("auto", [shared]) == "clusters"
    assert qat.resolve_preserve("auto", [np.where(pruned != 0, shared, 0)]) == "both"
    assert qat.resolve_preserve("auto", [dense[:3, :3]]) == "none"  # 9 distinct values of 9: not shared
    assert qat.resolve_preserve("none", [pruned]) == "none"


def test_flags_and_help(capsys, reference_dir, tmp_path):
    with pytest.raises(SystemExit):
        main(["compress", "--method", "qat", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--preserve {auto,none,sparsity,clusters,both}" in text and "(default: auto)" in text
    assert "--epochs EPOCHS fine-tuning epochs (default: 3)" in text
    assert main(["compress", "--from", str(reference_dir), "--method", "qat", "--preserve", "zeros",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--preserve" in err and len(err.splitlines()) == 1 and not (tmp_path / "o").exists()


def test_int8_encoding_counts_a_per_channel_grid():
    """Channel 0 on the grid 0.5·k (k = -2, 1, 4), channel 1 on 0.01·k (k = 127, -3, 0): 6 weights in 8 bits
    and 2 scales: 6·8 + 2·32 = 112 bits, below the 6 floats (192) and the sparse encodings (5 floats, ≥ 160)."""
    w = np.array([[-1.0, 1.27], [0.5, -0.03], [2.0, 0.0]], np.float32)
    assert on_int8_grid(w) and array_bits(w) == (112, "int8")
    assert not on_int8_grid(np.array([[1.0], [0.3337], [0.5]]))  # 0.3337 is on no grid k·s with |k| ≤ 127
    assert not on_int8_grid(np.arange(300.0).reshape(300, 1))  # 300 values: more than int8 holds
    assert not on_int8_grid(np.array([1.0, 0.5]))  # one channel per value: a vector has no kernel layout
