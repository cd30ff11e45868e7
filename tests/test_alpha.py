"""The α-schedule: branch sizes, blending at α = 1 and α = 0, schedules (note 002's legend values and its
recipe as one flag set), teacher loss, bad input."""
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from cli_help import help_of
from kcompress import api
from kcompress.backend import keras
from kcompress.cli import main as cli
from kcompress.core.modeldir import load_model, RUN_FILE, save_model, write_json
from kcompress.core.zoo import build_model
from kcompress.methods.alpha import blend, method as alpha
from kcompress.methods.alpha.settings import alpha_schedule, AlphaSettings, NOTE_002_RECIPE
from kcompress.pipeline import clone


def small(reference, n=600):
    """``reference`` with a copy of its model and a small slice of its data (fast training)."""
    d = reference.data
    data = replace(d, x_train=d.x_train[:n], y_train=d.y_train[:n], x_val=d.x_val[:200], y_val=d.y_val[:200])
    return replace(reference, model=clone(reference.model), data=data)


def save_and_load(model, folder):
    """``model`` after a round trip through a model directory (Keras safe mode)."""
    save_model(model, folder)
    write_json(folder / RUN_FILE, {})
    return load_model(folder)


def quick(**settings):
    """Settings for a tiny schedule: α = 0.5 then 0, one epoch each."""
    return {"alpha_schedule": "list", "alpha_list": "0.5,0", "epochs_per_alpha": 1, "epochs": 1, **settings}


def run(ref, **settings):
    return alpha.run(ref, AlphaSettings.from_dict(quick(**settings)))


def test_branch_rank_hits_the_target(reference):
    for name in ("dense_1", "dense_2"):
        layer = reference.model.get_layer(name)
        rank, count = blend.branch_rank(layer, 0.65)
        target = 0.35 * blend.layer_params(layer)
        assert abs(count - target) <= 0.01 * target
        narrow, proj = blend.branch_layers(layer, rank)
        model = keras.Sequential([keras.Input(layer.input.shape[1:]), narrow, proj])
        assert model.count_params() == count
    conv = build_model("convnet", (28, 28), 10).get_layer("conv_2")  # 3×3, 16 → 32 channels, no bias
    rank, count = blend.branch_rank(conv, 0.65)
    assert (rank, count) == (9, 9 * (3 * 3 * 16 + 32))  # nearest integer rank: within half a rank step
    assert abs(count - 0.35 * 3 * 3 * 16 * 32) <= (3 * 3 * 16 + 32) / 2


@pytest.mark.parametrize("zoo_name, before_activation", [("lenet300", True), ("lenet300", False), ("convnet", True)])
def test_alpha_one_is_the_original_exactly(reference, zoo_name, before_activation):
    model = reference.model if zoo_name == "lenet300" else build_model("convnet", (28, 28), 10)
    layers = alpha.prunable_layers(model, ",".join(l.name for l in alpha.target_layers(model)))
    ranks = {l.name: blend.branch_rank(l, 0.65)[0] for l in layers}
    blended = blend.blend_model(model, ranks, before_activation=before_activation, pooled=blend.pooled_convs(model))
    x = reference.data.x_test[:256]
    got, want = blended.predict(x, verbose=0), model.predict(x, verbose=0)
    if zoo_name == "lenet300":  # bitwise: 1·y + 0·branch == y
        assert np.array_equal(got, want)
    else:  # TF fuses the original's conv → batch-norm differently once a Blend sits between: float rounding only
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("before_activation", [True, False])
def test_alpha_zero_strips_the_originals(reference, tmp_path, before_activation):
    model = reference.model
    blended = blend.blend_model(model, {"dense_1": 20, "dense_2": 10}, alpha=0.0, before_activation=before_activation)
    for layer in blended.layers:  # trained-looking branches and changed non-target weights
        if layer.name.endswith(blend.PROJ) or layer.name == "dense_3":
            layer.set_weights([w + np.random.default_rng(1).normal(0, 0.1, w.shape) for w in layer.get_weights()])
    stripped = blend.strip_model(model, blended)
    loaded = save_and_load(stripped, tmp_path)
    names = {l.name for l in loaded.layers}
    assert "dense_1" not in names and "dense_2" not in names and not blend.blend_layers(loaded)
    assert {w.shape for w in loaded.weights}.isdisjoint({(784, 300), (300, 100)})
    x = reference.data.x_test[:256]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), blended.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_default_layers_count_multiply_adds_too():
    convnet = build_model("convnet", (28, 28), 10)  # conv_1: 0.07 % of the parameters, 9 % of the multiply-adds
    assert [l.name for l in alpha.prunable_layers(convnet)] == ["conv_1", "conv_2", "dense_1"]
    assert blend.layer_macs(convnet.get_layer("conv_1")) == 3 * 3 * 16 * 28 * 28


@pytest.mark.parametrize("zoo_name, pooled", [("convnet", ["conv_1", "conv_2"]), ("lenet5", ["conv_1", "conv_2"])])
def test_pooled_branches_drop_upsampling_and_pool_exactly(reference, tmp_path, zoo_name, pooled):
    model = build_model(zoo_name, (28, 28), 10)
    assert list(blend.pooled_convs(model)) == pooled
    ranks = {name: blend.branch_rank(model.get_layer(name), 0.65)[0] for name in pooled + ["dense_1"]}
    blended = blend.blend_model(model, ranks, alpha=0.0, pooled=pooled)
    rng = np.random.default_rng(2)
    for layer in blended.layers:  # trained-looking branches, and batch-norms with some negative scales
        if layer.name.endswith(blend.PROJ):
            layer.set_weights([w + rng.normal(0, 0.5, w.shape) for w in layer.get_weights()])
        elif layer.name.startswith("bn_"):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.normal(0, 1, gamma.shape), rng.normal(0, 0.5, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2, var.shape)])
    stripped = save_and_load(blend.strip_model(model, blended), tmp_path)
    kinds = [type(l).__name__ for l in stripped.layers]
    assert "MaxPooling2D" not in kinds and "UpSampling2D" not in kinds and not blend.blend_layers(stripped)
    assert stripped.get_layer("conv_1_narrow").get_config()["strides"] == (2, 2)
    x = reference.data.x_test[:128]
    got, want = stripped.predict(x, verbose=0), blended.predict(x, verbose=0)
    assert np.all(np.isfinite(want)) and np.std(want) > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_blended_model_saves_and_loads_with_its_alpha(reference, tmp_path):
    blended = blend.blend_model(reference.model, {"dense_2": 5})
    blend.set_alpha(blended, 0.3)
    loaded = save_and_load(blended, tmp_path)
    assert [float(l.alpha.numpy()) for l in blend.blend_layers(loaded)] == pytest.approx([0.3])


def test_schedule_values():
    assert alpha_schedule("geometric", 0.5, 0.2) == [0.5, 0.25, 0.0]
    assert alpha_schedule("linear", 0.25, 0.3) == [0.75, 0.5, 0.0]
    assert alpha_schedule("list", values="0.8,0.3") == [0.8, 0.3, 0.0]
    default = AlphaSettings().alphas()
    assert default[0] == pytest.approx(math.exp(-0.05)) and default[-2] >= 0.05 > default[-2] * math.exp(-0.05)
    assert default[-1] == 0
    assert all(a > b for a, b in zip(default, default[1:]))


def test_run_labels_gives_plain_smaller_model(reference):
    ref = small(reference)
    result = run(ref, prune=0.65)
    rec = result.record
    assert set(rec["branches"]) == {"dense_1", "dense_2"}  # dense_3 holds < 1 % of the parameters
    kept_dense_3 = blend.layer_params(reference.model.get_layer("dense_3"))
    assert result.model.count_params() == rec["branch_params"] + kept_dense_3
    assert rec["kept_share"] == pytest.approx(0.35, abs=0.0035)
    assert not blend.blend_layers(result.model) and all(l.trainable for l in result.model.layers)
    assert result.history["alpha"] == [0.5, 0.0] and len(result.history["loss"]) == 2
    assert [r["alpha"] for r in rec["per_alpha"]] == [0.5, 0.0]


def test_run_on_a_conv_net_drops_the_pools(reference):
    ref = replace(small(reference, n=300), model=build_model("convnet", (28, 28), 10))
    result = run(ref, prune=0.65)
    branches = result.record["branches"]
    assert {n: b["pooled"] for n, b in branches.items()} == {"conv_1": True, "conv_2": True, "dense_1": False}
    kinds = [type(l).__name__ for l in result.model.layers]
    assert "MaxPooling2D" not in kinds and "UpSampling2D" not in kinds
    assert result.model.output_shape == (None, 10) and result.record["kept_share"] == pytest.approx(0.35, abs=0.01)


def test_teacher_loss_is_the_per_output_mean(reference):
    ref = small(reference)
    teacher = reference.model.predict(ref.data.x_val, verbose=0)
    result = run(ref, target="teacher", alpha_list="0", epochs=2)
    pred = result.model.predict(ref.data.x_val, verbose=0)
    assert result.history["val_loss"][-1] == pytest.approx(float(np.mean((pred - teacher) ** 2)), rel=1e-4)


def test_compress_writes_table_and_marked_curves(reference_dir, tmp_path):
    out = tmp_path / "a"
    api.compress(reference_dir, "alpha", out, layers="dense_1", **quick())
    run = json.loads((out / "run.json").read_text())
    assert run["method"]["branches"]["dense_1"]["rank"] == 76
    assert (out / "training.png").is_file() and (out / "alpha.csv").read_text().startswith("alpha,epochs")
    assert (out / "alpha.md").read_text().count("\n") == 4  # header, rule, α = 0.5, α = 0


@pytest.mark.parametrize("flags, message", [
    (["--prune", "1.5"], "--prune must be in (0, 1)"),
    (["--prune", "0"], "--prune must be in (0, 1)"),
    (["--layers", "flatten"], "flatten is a Flatten"),
    (["--alpha-schedule", "list", "--alpha-list", "0.2,0.5"], "strictly decreasing"),
    (["--target", "student"], "unknown --target"),
    (["--conv-branch", "wide"], "--conv-branch"),
])
def test_bad_input_exits_2(reference_dir, tmp_path, capsys, flags, message):
    argv = ["compress", "--from", str(reference_dir), "--method", "alpha", "--out", str(tmp_path / "x"), *flags]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_teacher_target_logs_the_label_error_per_epoch(reference):
    ref = small(reference)
    result = run(ref, target="teacher")
    h = result.history
    assert len(h["label_error"]) == len(h["loss"]) == 2
    pred = result.model.predict(ref.data.x_val, verbose=0).argmax(axis=-1)
    assert h["label_error"][-1] == pytest.approx(100.0 * np.mean(pred != ref.data.y_val))


def test_curves_get_one_colour_per_alpha(tmp_path, monkeypatch):
    from kcompress.reporting import plots

    drawn = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.append(fig))
    history = {"loss": [3.0, 2.0, 1.5, 1.0, 0.5], "alpha": [0.9, 0.9, 0.5, 0.5, 0.0]}
    plots.training_curves(history, tmp_path / "t.png", color_by="alpha")
    colours = {tuple(line.get_color()) for line in drawn[0].axes[0].lines if len(line.get_xdata())}
    assert len(colours) == 3


def test_exp_alpha_schedule_is_note_002s_legend():
    """Note 002: 'an exponential schedule with a decay rate of 0.05' with α = 0.95, 0.6, 0.45 in the legend."""
    alphas = AlphaSettings().alphas()
    assert [round(alphas[k - 1], 3) for k in (1, 10, 16)] == [0.951, 0.607, 0.449]
    geometric = alpha_schedule("geometric", 0.05, 0.05)
    assert [round(geometric[k - 1], 3) for k in (1, 15, 16)] == [0.95, 0.463, 0.44]
    # e^(−0.05k) ≥ 0.05 up to k = 59 (ln 20 / 0.05 = 59.9), then 0
    assert len(alphas) == 60 and alphas[-2] == pytest.approx(math.exp(-2.95)) and alphas[-1] == 0.0


def test_note_002_recipe_is_the_defaults_without_the_lr_drop_end():
    from kcompress.cli.main import parse

    argv = ["compress", "--from", "m", "--method", "alpha", "--out", "x", *NOTE_002_RECIPE.split()]
    values = {k: v for k, v in parse(argv)[1].items() if k not in ("from_dir", "method", "out")}
    recipe = AlphaSettings.from_dict(values)
    assert recipe == AlphaSettings().replace(alpha_lr_drops=0)
    assert recipe.epochs_per_alpha == 350 and recipe.lr == 1e-3 and recipe.patience == 0
    assert NOTE_002_RECIPE in help_of("alpha")
