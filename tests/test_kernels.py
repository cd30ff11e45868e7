"""Every kernel of a user's graph (Dense, Conv1D/2D, transposed, depthwise and separable
convolutions, beside batch-norm, Add/Concatenate, pooling, Reshape/Flatten) under the weight-level
methods: prune, cluster, prune+cluster and LC compress each one; a layer they cannot take is
skipped with a notice; a small learned index clusters without a batch larger than its data."""
import json

import numpy as np
import pytest
from usermodels import branchy_cnn, image_arrays, residual_cnn

from kcompress.backend import keras, set_seed
from kcompress.core.data import Dataset
from kcompress.core.record import RunRecord
from kcompress.core.stats import array_bits, compression_stats
from kcompress.errors import UsageError
from kcompress.methods import settings_class
from kcompress.methods.base import Reference, kernel_names
from kcompress.methods.lc.tasks import parse_task, resolve
from kcompress.training.config import TrainConfig

QUICK = dict(epochs=1, batch_size=100)
BUILDERS = {"residual": residual_cnn, "branchy": branchy_cnn}


@pytest.fixture(scope="module")
def data():
    a = image_arrays(n_train=500, n_test=200)
    empty = a["x_train"][:0], a["y_train"][:0]
    return Dataset("digits14", a["x_train"], a["y_train"], *empty, a["x_test"], a["y_test"], "classification", 10,
                   head="softmax")  # the models of usermodels.py end in a softmax


def reference(model, data):
    return Reference(model=model, run=RunRecord(), data=data,
                     train=TrainConfig(optimizer="adam", lr=1e-3, verbose=0, **QUICK))


def build(name):
    set_seed(0)
    return BUILDERS[name]()


def compress(method, model, data, **settings):
    cls = settings_class(method)
    module = __import__(cls.RUNNER, fromlist=["run"])
    quick = {k: v for k, v in QUICK.items() if k in cls.names()}  # LC counts L-steps, not epochs
    return module.run(reference(model, data), cls.from_dict({**quick, **settings}))


def kernels(model):
    """``{layer/kernel name: array}`` of every kernel of ``model``."""
    return {f"{l.name}/{n}": getattr(l, n).numpy() for l in model.layers for n in kernel_names(l)}


def kernel_layers(model):
    return [l.name for l in model.layers if kernel_names(l)]


@pytest.mark.parametrize("name", BUILDERS)
def test_prune_reaches_the_target_sparsity_on_every_kernel(name, data, tmp_path):
    model = build(name)
    result = compress("prune", model, data, sparsity=0.5, schedule="constant")
    found = kernels(result.model)
    assert any("depthwise_kernel" in k for k in found) and any("pointwise_kernel" in k for k in found)
    for key, k in found.items():
        assert abs(np.sum(k == 0) - round(0.5 * k.size)) <= 1, key
    assert result.record["layers"]["wrapped"] == kernel_layers(model) and not result.record["layers"]["skipped"]
    assert not any("get_prunable_weights" in vars(l) for l in result.model.layers)  # no hook left behind
    result.model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False, safe_mode=True)
    assert all(np.array_equal(k, kernels(loaded)[key]) for key, k in found.items())


@pytest.mark.parametrize("name", BUILDERS)
def test_cluster_leaves_at_most_k_values_in_every_kernel(name, data):
    model = build(name)
    result = compress("cluster", model, data, clusters=4, assignments="tfmot")
    for key, k in kernels(result.model).items():
        assert len(np.unique(k)) <= 4, key
    depthwise = [l.name for l in model.layers if "depthwise_kernel" in kernel_names(l)]
    assert result.record["clustering"]["fixed_in"] == depthwise  # tfmot's registry skips depthwise kernels
    assert result.record["layers"]["wrapped"] == kernel_layers(model)
    assert result.record["stripped_vs_wrapped_max_rel_diff"] < 1e-6


def test_prune_cluster_keeps_the_zeros_and_k_values_in_every_kernel(data):
    result = compress("prune+cluster", build("branchy"), data, sparsity=0.5, clusters=4, schedule="constant",
                      cluster_epochs=1, codebook="kmeans")
    for key, k in kernels(result.model).items():
        assert abs(np.sum(k == 0) - round(0.5 * k.size)) <= 1 and len(np.unique(k)) <= 4, key
    assert result.record["cluster"]["clustering"]["zeros_kept_in"] == kernel_layers(result.model)


def test_m_by_n_sparsity_skips_the_kernels_tfmot_cannot_block(data, capsys):
    """tfmot's M-by-N pruning takes rank-2 and rank-4 kernels: the 1-D convolutions are skipped, each
    with one notice line, and the others hold two zeros in every four."""
    result = compress("prune", build("branchy"), data, m_by_n="2:4")
    notices = [line for line in capsys.readouterr().out.splitlines() if line.startswith("skipped layer")]
    assert [line.split(":")[0] for line in notices] == [f"skipped layer {n}" for n in ("conv1d", "dw1d", "sep1d")]
    assert result.record["layers"]["wrapped"] == ["conv", "dw", "deconv", "head"]
    head = result.model.get_layer("head").kernel.numpy()
    assert np.all((head.T.reshape(10, -1, 4) == 0).sum(axis=-1) >= 2)


class Scale(keras.layers.Layer):
    """A layer of the user's own that no method knows."""

    def build(self, input_shape):
        self.w = self.add_weight("w", shape=input_shape[-1:], initializer="ones")

    def call(self, x):
        return x * self.w


def scaled_mlp():
    inputs = keras.Input((14, 14, 1))
    x = Scale(name="scale")(keras.layers.Flatten(name="flat")(inputs))
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(x))


def test_a_layer_tfmot_refuses_is_skipped_with_a_notice_or_refused_alone(data, capsys):
    set_seed(0)
    result = compress("cluster", scaled_mlp(), data, clusters=4, layers="scale,head")
    notices = [line for line in capsys.readouterr().out.splitlines() if line.startswith("skipped layer")]
    assert len(notices) == 1 and notices[0].startswith("skipped layer scale: ")
    assert result.record["layers"]["wrapped"] == ["head"] and len(np.unique(result.model.get_layer("head").kernel)) <= 4
    with pytest.raises(UsageError, match="--layers: tfmot can wrap none of scale"):
        compress("prune", scaled_mlp(), data, layers="scale")


def lc(model, data, *tasks):
    return compress("lc", model, data, task=tasks, mu_list=(1e-3, 1e-2, 1e-1), l_epochs=1)


def test_lc_pruning_and_quantization_hold_on_every_kernel(data):
    model = lc(build("branchy"), data, "all:prune-l0:kappa=0.2").model
    found = kernels(model)
    total = sum(k.size for k in found.values())
    assert sum(np.count_nonzero(k) for k in found.values()) == round(0.2 * total)
    result = lc(build("residual"), data, "each:quant:k=4")
    for layer in kernel_layers(result.model):  # one codebook per layer: the separable one's two kernels share it
        values = np.concatenate([v.ravel() for k, v in kernels(result.model).items() if k.startswith(layer + "/")])
        assert len(np.unique(values)) <= 4, layer
    assert [t["task"].split(":")[0] for t in result.record["tasks"]] == kernel_layers(result.model)


def test_low_rank_takes_one_dense_or_conv2d_kernel(data, capsys):
    model = build("residual")
    shapes = {l.name: [tuple(getattr(l, n).shape) for n in kernel_names(l)] for l in model.layers if kernel_names(l)}
    names = list(shapes)
    tasks = resolve([parse_task("each:lowrank:rank=2")], shapes, names, matrices=names)
    assert [t.layers[0] for t in tasks] == [n for n in names if n != "sep"]
    assert capsys.readouterr().out.strip() == ("--task 'each:lowrank:rank=2': skipped layer sep: "
                                               "its kernel is not one matrix that can be factorised")
    with pytest.raises(UsageError, match="layer sep has two kernels"):
        lc(model, data, "sep:lowrank:rank=2")
    with pytest.raises(UsageError, match="layer dw is not a Dense or Conv2D layer"):
        lc(build("branchy"), data, "dw:lowrank:rank=1")


def test_storage_counts_every_weight_array(data):
    model = build("residual")
    stats = compression_stats(model, model)
    assert stats["total"]["params"] == model.count_params()
    sep = next(r for r in stats["layers"] if r["layer"] == "sep")
    assert set(sep["arrays"]) == {"depthwise_kernel", "pointwise_kernel", "bias"}
    assert stats["total"]["bits"] == sum(array_bits(w)[0] for w in model.get_weights())
    block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)], name="block")
    inputs = keras.Input((4,))
    nested = compression_stats(keras.Model(inputs, block(inputs)), keras.Model(inputs, block(inputs)))
    assert len(nested["layers"][0]["arrays"]) == 4  # each sub-layer's kernel and bias, none hidden


def test_clustering_a_small_learned_index_caps_the_batch_at_its_keys(tmp_path):
    """Fixed sharing's batch of 4,096 is larger than 2,700 training keys: one batch per epoch, capped at
    the split and recorded; the 2,000-key check after fine-tuning sees every output (it once saw 1,024)."""
    from kcompress import api

    api.train(tmp_path / "index", model="index64", data="keys:lognormal:3000", val_split=0.1, epochs=1, seed=0,
              verbose=0)
    for method, epochs in (("cluster", {}), ("prune+cluster", {"cluster_epochs": 1, "codebook": "kmeans"})):
        api.compress(tmp_path / "index", method, tmp_path / method, clusters=8, epochs=1, **epochs)
        run = json.loads((tmp_path / method / "run.json").read_text())
        stage = run["method"].get("cluster", run["method"])
        assert stage["clustering"]["assignments"] == "fixed"
        assert stage["finetune"]["batch_size"] == run["dataset"]["n_train"] == 2700
