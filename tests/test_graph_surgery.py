"""Model surgery on a user's own functional graphs: rebuilds of DAGs, channel groups, real channel
removal through Add/Concatenate/Flatten, and the structural methods (pruner, α) on a residual CNN."""
import dataclasses

import numpy as np
import pytest

from kcompress.backend import keras
from kcompress.core.channels import Channels
from kcompress.core.data import Dataset
from kcompress.core.record import RunRecord
from kcompress.core.surgery import output_layers, rebuild
from kcompress.errors import UsageError
from kcompress.methods import get_method, settings_class
from kcompress.methods.base import Reference
from kcompress.methods.pruner import gates as G
from kcompress.methods.pruner.method import gate_targets
from kcompress.methods.pruner.settings import PrunerSettings
from kcompress.methods.pruner.units import remove_units
from kcompress.training.config import TrainConfig
from usermodels import image_arrays, residual_cnn

L = keras.layers


@pytest.fixture(scope="module")
def images():
    return image_arrays(n_train=256, n_test=64)


def _randomised(model, seed=0):
    """``model`` with random batch-norm statistics and biases, so that slicing them matters."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([w if w.ndim > 1 else rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                               for w in layer.get_weights()])
    return model


def _concat_model():
    """Two convs concatenated, a ReLU, Flatten, a hidden Dense and two outputs (one off the hidden layer)."""
    x = inputs = keras.Input((6, 6, 1), name="image")
    a = L.Conv2D(3, 3, name="conv_a")(x)
    b = L.Conv2D(4, 3, name="conv_b")(x)
    h = L.Flatten(name="flat")(L.MaxPooling2D(name="pool")(L.ReLU(name="relu")(L.Concatenate(name="cat")([a, b]))))
    h = L.Dense(6, activation="relu", name="hidden")(h)
    return keras.Model(inputs, [L.Dense(2, name="out_1")(h), L.Dense(1, name="out_2")(b)], name="concat_net")


def _mobile_block():
    """Pointwise conv → BN → ReLU6 → depthwise conv (with bias) → BN → ReLU → pointwise conv, GAP, head."""
    x = inputs = keras.Input((6, 6, 2))
    x = L.ReLU(6.0, name="relu_1")(L.BatchNormalization(name="bn_1")(L.Conv2D(6, 1, name="expand")(x)))
    x = L.ReLU(name="relu_2")(L.BatchNormalization(name="bn_2")(L.DepthwiseConv2D(3, name="dw")(x)))
    x = L.GlobalAveragePooling2D(name="gap")(L.Conv2D(4, 1, name="project")(x))
    return keras.Model(inputs, L.Dense(3, name="out")(x))


def _assorted_net():
    """A squeeze-excitation block (Multiply with a Reshape to 1×1×C), a transposed conv, a Dense
    on a 4-D tensor, a Reshape keeping the channels last, a Conv1D."""
    x = inputs = keras.Input((6, 6, 2))
    a = L.Conv2D(6, 3, padding="same", activation="relu", name="a")(x)
    s = L.Dense(3, activation="relu", name="se1")(L.GlobalAveragePooling2D(name="squeeze")(a))
    s = L.Reshape((1, 1, 6), name="to_1x1")(L.Dense(6, activation="sigmoid", name="se2")(s))
    a = L.Multiply(name="excite")([a, s])
    t = L.MaxPooling2D(name="down")(L.Conv2DTranspose(5, 3, strides=2, padding="same", name="up")(a))
    d = L.Dense(4, name="dense_4d")(L.Concatenate(name="cat")([t, a]))
    y = L.Conv1D(3, 2, name="c1d")(L.Reshape((36, 4), name="seq")(d))
    return keras.Model(inputs, L.Dense(2, name="out")(L.Flatten(name="flat")(y)))


def _predict(model, x):
    out = model.predict(x, verbose=0)
    return out if isinstance(out, list) else [out]


@pytest.mark.parametrize("build", [residual_cnn, _concat_model])
def test_identity_rebuild_computes_the_same(build, rng):
    model = _randomised(build())
    x = rng.random((4,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)
    copy = rebuild(model)
    assert [l.name for l in copy.layers] == [l.name for l in model.layers]
    assert all(a is not b for a, b in zip(copy.layers, model.layers))
    for got, want in zip(_predict(copy, x), _predict(model, x)):
        np.testing.assert_array_equal(got, want)


def test_rebuild_refuses_a_nested_model():
    inner = keras.Sequential([keras.Input((4,)), L.Dense(3)], name="inner")
    x = keras.Input((4,))
    with pytest.raises(UsageError, match="'inner' .* nested model"):
        rebuild(keras.Model(x, L.Dense(2)(inner(x))))


def test_channel_groups_of_the_residual_cnn():
    groups = {tuple(g.members): g for g in Channels(residual_cnn()).groups}
    assert list(groups) == [("stem", "b1_conv2"), ("b1_conv1",), ("sep",), ("head",)]
    assert [g.width for g in groups.values()] == [8, 8, 16, 10]
    assert [g.prunable for g in groups.values()] == [True, True, True, False]


def test_a_reshape_freezes_the_group_it_reaches(capsys):
    x = inputs = keras.Input((6, 6, 1))
    x = L.Conv2D(4, 3, padding="same", name="first")(x)
    x = L.Conv2D(5, 3, name="second")(x)
    x = L.Dense(3, name="out")(L.Flatten()(L.Reshape((40, 2), name="reshape")(x)))
    model = keras.Model(inputs, x)
    groups = {g.name: g for g in Channels(model).groups}
    assert groups["first"].prunable and not groups["second"].prunable
    assert "'reshape' (Reshape)" in groups["second"].reason
    assert gate_targets(model, PrunerSettings(keep=0.5)) == {"first": 2}
    assert capsys.readouterr().out.strip() == f"[pruner] skipping second: {groups['second'].reason}"
    with pytest.raises(UsageError, match="cannot prune second: .*'reshape'"):
        gate_targets(model, PrunerSettings(layers="second"))
    only = keras.Model(inputs, L.Dense(2)(L.Permute((3, 1, 2))(model.get_layer("first").output)))
    with pytest.raises(UsageError, match="no layer to prune: first: .*Permute"):
        gate_targets(only, PrunerSettings(keep=0.5))


def _hard_gated(model, keep):
    """``model`` with every kept group's other channels multiplied by exactly 0 (hard gates)."""
    gated, gates = G.add_gates(model, list(keep))
    for name, gate in gates.items():
        w = np.full(gate.w.shape[0], -1.0, np.float32)
        w[keep[name]] = 1.0
        gate.w.assign(w)
    return G.harden(gated)


@pytest.mark.parametrize("build, keep", [
    (residual_cnn, {"stem": [0, 3, 4], "b1_conv1": [1, 2, 7], "sep": list(range(0, 16, 2))}),
    (_concat_model, {"conv_a": [2], "conv_b": [0, 3], "hidden": [1, 2, 5]}),
    (_mobile_block, {"expand": [1, 4], "project": [0, 2, 3]}),
    (_assorted_net, {"a": [0, 2, 5], "se1": [1], "up": [0, 1, 4], "dense_4d": [1, 3], "c1d": [0, 2]}),
])
def test_removal_equals_the_zeroed_channels(build, keep, rng):
    model = _randomised(build())
    x = rng.random((8,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)
    pruned = remove_units(model, keep)
    for got, want in zip(_predict(pruned, x), _predict(_hard_gated(model, keep), x)):
        np.testing.assert_allclose(got, want, atol=1e-5)
    channels = Channels(pruned)
    for name, idx in keep.items():
        for member in Channels(model).group_of(name).members:
            assert pruned.get_layer(member).output_shape[-1] == len(idx)
            assert channels.group_of(member).width == len(idx)
    assert pruned.count_params() < model.count_params()


def test_removal_names_a_group_once():
    with pytest.raises(UsageError, match="b1_conv2 and stem share their channels"):
        remove_units(residual_cnn(), {"stem": [0, 1], "b1_conv2": [0, 2]})
    pruned = remove_units(residual_cnn(), {"stem": [0, 1], "b1_conv2": [1, 0]})  # same set: fine
    assert pruned.get_layer("b1_add").output_shape == (None, 14, 14, 2)


def _reference(model, images):
    data = Dataset(name="digits", x_train=images["x_train"], y_train=images["y_train"], x_val=images["x_test"][:32],
                   y_val=images["y_test"][:32], x_test=images["x_test"], y_test=images["y_test"],
                   task="classification", num_classes=10, head="softmax")
    return Reference(model=model, run=RunRecord(), data=data, train=TrainConfig(epochs=1, verbose=0, lr=0.01))


def test_pruner_removes_channels_of_the_residual_cnn_and_exports_to_onnx(images):
    from kcompress.deploy.check import OnnxRunner
    from kcompress.deploy.convert import to_onnx

    settings = PrunerSettings.from_dict(dict(keep=0.5, max_epochs=3, lambda_every=1, gate_lr=0.1, epochs=1))
    result = get_method("pruner").run(_reference(residual_cnn(), images), settings)
    rec, model = result.record, result.model
    assert rec["targets"] == {"stem": 4, "b1_conv1": 4, "sep": 8}
    assert rec["groups"] == {"stem": ["stem", "b1_conv2"], "b1_conv1": ["b1_conv1"], "sep": ["sep"]}
    assert {k: len(v) for k, v in rec["kept_units"].items()} == rec["targets"]
    filters = {l.name: l.filters for l in model.layers if hasattr(l, "filters")}
    assert filters == {"stem": 4, "b1_conv1": 4, "b1_conv2": 4, "sep": 8}
    assert model.get_layer("b1_add").output_shape == (None, 14, 14, 4) and model.output_shape == (None, 10)
    assert not any(isinstance(l, G.Gate) for l in model.layers)
    x = images["x_test"][:32]
    got = OnnxRunner(to_onnx(model))(x)
    assert np.abs(got - model.predict(x, verbose=0)).max() < 1e-4


def _two_path_net():
    """conv_1 → ReLU → 2×2 max-pool on one path; conv_2, read by a pool and a global pool, on the other."""
    x = inputs = keras.Input((8, 8, 1))
    a = L.MaxPooling2D(name="pool_1")(L.ReLU(name="relu_1")(L.Conv2D(4, 3, padding="same", name="conv_1")(x)))
    b = L.Conv2D(4, 3, padding="same", name="conv_2")(x)
    y = L.Add(name="add")([a, L.MaxPooling2D(name="pool_2")(b)])
    y = L.Concatenate(name="cat")([L.GlobalAveragePooling2D(name="gap_1")(y), L.GlobalMaxPooling2D(name="gap_2")(b)])
    return keras.Model(inputs, L.Dense(3, name="out")(y))


@pytest.mark.parametrize("build, ranks", [(residual_cnn, {"stem": 2, "b1_conv2": 3, "head": 2}),
                                          (_two_path_net, {"conv_1": 2, "conv_2": 2})])
def test_blend_and_strip_follow_the_graph(build, ranks, rng):
    from kcompress.methods.alpha import blend

    model = _randomised(build())
    pooled = blend.pooled_convs(model)
    assert pooled == ({} if build is residual_cnn else {"conv_1": "pool_1"})
    x = rng.random((4,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)
    blended = blend.blend_model(model, ranks, pooled=pooled)
    np.testing.assert_allclose(blended.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    blend.set_alpha(blended, 0.0)
    stripped = blend.strip_model(model, blended)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), blended.predict(x, verbose=0), atol=1e-5)
    assert not {"pool_1", "conv_1_up"} & {l.name for l in stripped.layers}


def test_alpha_schedule_runs_on_the_residual_cnn(images):
    from kcompress.methods.alpha.blend import blend_layers

    settings = settings_class("alpha").from_dict(dict(alpha_schedule="list", alpha_list="0", epochs_per_alpha=1,
                                                  epochs=1))
    result = get_method("alpha").run(_reference(residual_cnn(), images), settings)
    names = {l.name for l in result.model.layers}
    assert set(result.record["branches"]) == {"stem", "b1_conv1", "b1_conv2"}  # the softmax head stays whole
    assert "head" in names
    for layer in result.record["branches"]:
        assert layer not in names and {layer + "_narrow", layer + "_proj"} <= names
    assert not blend_layers(result.model) and "b1_add" in names
    assert result.model.output_shape == (None, 10)
    assert result.model.count_params() < residual_cnn().count_params()


def test_output_layers_are_found_through_weightless_layers():
    """The softmax head of the residual CNN makes the output directly; a linear Dense reached through an
    Activation and a Dropout is found too, and the two heads of a two-output model are both found."""
    assert output_layers(residual_cnn()) == {"head"}
    x = keras.Input((4,))
    h = keras.layers.Dense(6, name="hidden")(x)
    a = keras.layers.Dropout(0.1)(keras.layers.Activation("sigmoid")(keras.layers.Dense(1, name="p")(h)))
    model = keras.Model(x, [a, keras.layers.Dense(3, name="q")(h)])
    assert output_layers(model) == {"p", "q"}


def test_freezing_the_original_leaves_batch_norm_training():
    """A frozen batch-norm runs in inference mode with statistics the blended activations no longer have."""
    from kcompress.methods.alpha import blend

    model = residual_cnn()
    blended = blend.blend_model(model, {"stem": 4, "b1_conv1": 8}, before_activation=True, pooled=())
    blend.freeze_original(blended)
    trainable = {l.name for l in blended.layers if l.trainable and l.weights}
    bns = {l.name for l in blended.layers if isinstance(l, keras.layers.BatchNormalization)}
    assert bns and bns <= trainable
    assert not {"b1_conv2", "head"} & trainable and {"stem_narrow", "b1_conv1_proj"} <= trainable
