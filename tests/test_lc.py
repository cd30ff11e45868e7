"""The LC method: C-steps against brute force / closed forms, the penalty's gradient, a short
LC run, physical low-rank factorisation, task parsing and its errors."""
import itertools
from dataclasses import replace

import numpy as np
import pytest

from kcompress.errors import UsageError
from kcompress.methods.lc.types.additive import Additive
from kcompress.methods.lc.types.lowrank import LowRank, RankSelection
from kcompress.methods.lc.types.pruning import ConstraintL0, ConstraintL1, PenaltyL0, PenaltyL1
from kcompress.methods.lc.types.quantization import AdaptiveQuantization, Binary, ScaledBinary, ScaledTernary, assign
from kcompress.methods.lc.tasks import load_tasks_file, parse_task, resolve


def subsets(n):
    return (s for r in range(1, n + 1) for s in itertools.combinations(range(n), r))


def sq(a):
    return float(np.sum(np.asarray(a, np.float64) ** 2))


# -- C-steps ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kappa,count", [(3, 3), (0.25, 2)])
def test_l0_projection_keeps_exactly_kappa_and_is_the_best(rng, kappa, count):
    x = rng.normal(size=8).astype(np.float32)
    d = ConstraintL0(kappa=kappa).compress(x)
    assert np.count_nonzero(d) == count
    best = min(sq(x) - sq(x[list(s)]) for s in itertools.combinations(range(8), count))
    assert sq(x - d) == pytest.approx(best, rel=1e-6)


def test_l1_projection_lands_on_the_ball_and_matches_bisection(rng):
    x = rng.normal(size=50)
    d = ConstraintL1(kappa=2.0).compress(x)
    assert np.abs(d).sum() == pytest.approx(2.0)
    lo, hi = 0.0, np.abs(x).max()
    for _ in range(200):  # the threshold θ with Σ max(|x| − θ, 0) = κ
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.maximum(np.abs(x) - mid, 0).sum() > 2.0 else (lo, mid)
    np.testing.assert_allclose(d, np.sign(x) * np.maximum(np.abs(x) - lo, 0), atol=1e-9)
    inside = x / np.abs(x).sum()
    np.testing.assert_array_equal(ConstraintL1(kappa=2.0).compress(inside), inside)


def test_penalty_pruning_minimises_its_objective(rng):
    x, alpha, mu = rng.normal(size=8), 0.3, 2.0
    d0 = PenaltyL0(alpha=alpha).compress(x, mu)
    objective = lambda s: alpha * len(s) + mu / 2 * (sq(x) - sq(x[list(s)]))  # noqa: E731
    best = min([mu / 2 * sq(x)] + [objective(s) for s in subsets(8)])
    assert alpha * np.count_nonzero(d0) + mu / 2 * sq(x - d0) == pytest.approx(best)
    d1 = PenaltyL1(alpha=alpha).compress(x, mu)
    grid = np.linspace(-4, 4, 80001)
    for xi, di in zip(x, d1):
        assert di == pytest.approx(grid[np.argmin(alpha * np.abs(grid) + mu / 2 * (xi - grid) ** 2)], abs=1e-4)


def test_kmeans_codebook_is_a_fixed_point_and_warm_starts(rng):
    x = rng.normal(size=(40, 30)).astype(np.float32)
    q = AdaptiveQuantization(k=4)
    d = q.compress(x)
    codebook = q.theta["codebook"]
    assert set(np.unique(d)) <= set(codebook) and len(codebook) == 4
    labels = assign(x.ravel().astype(np.float64), codebook.astype(np.float64))
    for j, c in enumerate(codebook):  # every entry is the mean of the weights nearest to it
        assert c == pytest.approx(x.ravel()[labels == j].mean(), rel=1e-5)
    np.testing.assert_array_equal(q.compress(d), d)  # compressing Δ again changes nothing
    assert q.storage() == {"params": 4, "bits": 1200 * 2 + 4 * 32}


def test_binary_and_ternary_scales_are_optimal(rng):
    x = rng.normal(size=8)
    np.testing.assert_array_equal(Binary().compress(x), np.where(x >= 0, 1, -1))
    grid = np.linspace(0, 3, 30001)
    c_best = grid[np.argmin([sq(x - c * np.sign(x)) for c in grid])]
    assert ScaledBinary().compress(x)[0] == pytest.approx(c_best * np.sign(x[0]), abs=1e-4)
    t = ScaledTernary().compress(x)
    best = float("inf")
    for s in subsets(8):  # support s, scale c = mean |x_s| (optimal for that support)
        d = np.zeros(8)
        d[list(s)] = np.abs(x[list(s)]).mean() * np.sign(x[list(s)])
        best = min(best, sq(x - d))
    assert sq(x - t) == pytest.approx(best) and len(np.unique(np.abs(t[t != 0]))) == 1


def test_low_rank_error_is_the_tail_of_the_singular_values(rng):
    w = rng.normal(size=(30, 12))
    s = np.linalg.svd(w, compute_uv=False)
    d = LowRank(rank=4).compress(w)
    assert np.linalg.matrix_rank(d) == 4
    assert sq(w - d) == pytest.approx(np.sum(s[4:] ** 2))
    alpha, mu = 0.05, 1.0
    cost = [mu / 2 * np.sum(s[r:] ** 2) + alpha * r * 42 for r in range(13)]
    sel = RankSelection(alpha=alpha)
    sel.compress(w, mu)
    assert sel.theta["rank"] == int(np.argmin(cost))


def test_additive_codebook_plus_sparse_beats_each_part(rng):
    x = rng.normal(size=400)
    both = Additive([AdaptiveQuantization(k=2), ConstraintL0(kappa=20)])
    d = both.compress(x)
    assert sq(x - d) < sq(x - AdaptiveQuantization(k=2).compress(x))
    assert sq(x - d) < sq(x - ConstraintL0(kappa=20).compress(x))
    quant, sparse = both.pieces
    assert len(np.unique(quant)) == 2 and np.count_nonzero(sparse) == 20
    assert both.storage()["bits"] == 400 * 1 + 2 * 32 + 20 * 32 + both.parts[1].theta["positions"]


# -- tasks ----------------------------------------------------------------------------------------
def test_tasks_from_strings_and_yaml(tmp_path):
    shapes = {"dense_1": (784, 300), "dense_2": (300, 100), "dense_3": (100, 10)}
    specs = [parse_task("dense_1,dense_2:quant:k=2+prune-l0:kappa=0.01"), parse_task("dense_3:lowrank:rank=2")]
    tasks = resolve(specs, shapes, list(shapes))
    assert [t.layers for t in tasks] == [("dense_1", "dense_2"), ("dense_3",)]
    arrays = [np.arange(np.prod(s), dtype=np.float32).reshape(s) for s in tasks[0].shapes]
    assert tasks[0].join(arrays).shape == (784 * 300 + 300 * 100,)
    assert all(np.array_equal(a, b) for a, b in zip(tasks[0].split(tasks[0].join(arrays)), arrays))
    assert tasks[1].join([np.zeros((100, 10))]).shape == (100, 10)
    assert len(resolve([parse_task("each:quant:k=4")], shapes, list(shapes))) == 3
    path = tmp_path / "tasks.yaml"
    path.write_text("tasks:\n  - all:prune-l0:kappa=0.05\n"
                    "  - {layers: [dense_3], compression: {quant: {k: 2}, prune-l0: {kappa: 3}}}\n")
    yaml_specs = load_tasks_file(path)
    assert yaml_specs[1].layers == ("dense_3",) and [p[0] for p in yaml_specs[1].parts] == ["quant", "prune-l0"]


@pytest.mark.parametrize("text,reason", [
    ("nonsense", "expected LAYERS:COMPRESSION"),
    ("all:foo:k=2", "unknown compression 'foo'"),
    ("all:quant:k=1", "k=1 must be an integer from 2"),
    ("all:quant", "missing parameter(s) k"),
    ("all:prune-l0:kappa=2.5", "must be a share in (0, 1) or a whole number"),
    ("all:quant:k=2+lowrank:rank=2", "low-rank cannot be part of an additive"),
    ("all:quant:k=2,q=3", "unknown parameter(s) q"),
])
def test_bad_task_strings_say_why(text, reason):
    with pytest.raises(UsageError) as e:
        parse_task(text)
    assert reason in str(e.value)


def test_bad_tasks_exit_2_from_the_cli(reference_dir, tmp_path, capsys):
    from kcompress.cli.main import main

    base = ["compress", "--from", str(reference_dir), "--method", "lc", "--out", str(tmp_path / "o")]
    assert main(base + ["--task", "all:lowrank:rank=3"]) == 2
    assert "compresses one layer's matrix" in capsys.readouterr().err
    assert main(base + ["--task", "dense_9:quant:k=2"]) == 2
    err = capsys.readouterr().err
    assert "no layer with a kernel named dense_9" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


# -- the loop -------------------------------------------------------------------------------------
def small(reference, n=1000):
    """The reference with a copy of its model and the first ``n`` train and test samples."""
    from kcompress.pipeline import clone

    d = reference.data
    data = replace(d, x_train=d.x_train[:n], y_train=d.y_train[:n], x_test=d.x_test[:n], y_test=d.y_test[:n])
    return replace(reference, model=clone(reference.model), data=data)


def make_lc(ref, task, mus, **schedule):
    from kcompress.methods.base import finetune_config
    from kcompress.methods.lc.algorithm import LC
    from kcompress.methods.lc.schedule import Schedule
    from kcompress.methods.lc.settings import LCSettings

    shapes = {l.name: tuple(l.kernel.shape) for l in ref.model.layers if hasattr(l, "kernel")}
    tasks = resolve([parse_task(task)], shapes, list(shapes))
    return LC(ref.model, ref.data, tasks, finetune_config(ref, LCSettings(task=("all:prune-l0:kappa=0.5",)), verbose=0), Schedule(tuple(mus), **schedule))


def test_penalty_gradient_is_mu_times_w_minus_delta_minus_lambda_over_mu(reference, rng):
    from kcompress.backend import tf

    lc = make_lc(small(reference, 100), "dense_2,dense_3:prune-l0:kappa=0.1", [0.5])
    w = lc.weights()
    lc.lambdas = [rng.normal(size=x.shape).astype(np.float32) for x in w]
    lc.c_step(0.5)
    lc.set_penalty(0, 0.5)
    with tf.GradientTape() as tape:
        value = lc.penalty()
    grads = tape.gradient(value, lc.variables)
    want = lc.tasks[0].split(0.5 * (w[0] - lc.deltas[0] - lc.lambdas[0] / 0.5))
    for g, expected in zip(grads, want):
        np.testing.assert_allclose(g.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_short_lc_run_pulls_w_to_delta_and_ends_compressed(reference, capsys, monkeypatch):
    from kcompress.training.batches import training_input

    ref = small(reference)
    lc = make_lc(ref, "all:prune-l0:kappa=0.05", [2e-3, 2e-2, 2e-1], l_epochs=1)
    # XLA pays off over the 3 L-steps' epochs together, not over one: the run decides, not each fit
    per_epoch = training_input(ref.data, lc.cfg.batch_for(len(ref.data.x_train)))["steps_per_epoch"]
    monkeypatch.setattr("kcompress.training.execution.XLA_MIN_STEPS", 2 * per_epoch + 1)
    lc.run()
    # stderr is no terminal here (as in a log file): one plain line per μ step, no bar
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("LC:")]
    assert "\r" not in err and [line.split(",")[0] for line in lines] == ["LC: step 1/3", "LC: step 2/3", "LC: step 3/3"]
    assert all("mu " in line and "error_Δ" in line for line in lines), lines
    distances = [s["distance"] for s in lc.steps]
    assert distances[2] < distances[1] < distances[0] < lc.dc["distance"]
    kernels = [ref.model.get_layer(n).kernel.numpy() for n in ("dense_1", "dense_2", "dense_3")]
    assert sum(np.count_nonzero(k) for k in kernels) == round(0.05 * sum(k.size for k in kernels))
    assert set(lc.history) >= {"loss", "lc_penalty"} and len(lc.history["loss"]) == 3
    # each step scored in a thread while the next trained: every record complete, the last one
    # equal to scoring the final model (w = Δ(Θ)) here
    assert all({"train_error_w", "test_error_w", "train_error_delta", "test_error_delta"} <= set(s) for s in lc.steps)
    wrong = np.argmax(ref.model.predict(ref.data.x_test, verbose=0), -1) != ref.data.y_test
    assert lc.steps[-1]["test_error_delta"] == pytest.approx(100 * np.mean(wrong))
    traces = lc.trainee.train_function.experimental_get_tracing_count()
    lc.l_step(3, 1.0)  # another μ: new targets and μ are assigned, nothing is retraced
    assert lc.trainee.train_function.experimental_get_tracing_count() == traces
    assert lc.record()["execution"]["jit_compile"] and lc.record()["execution"]["steps_per_execution"] > 1


def test_scores_of_w_and_delta_in_one_call_match_scoring_each_and_keep_w(reference, rng):
    lc = make_lc(small(reference, 300), "each:quant:k=2", [1e-3])
    w = [v.numpy() for v in lc.variables]
    lc.lambdas = [np.zeros_like(x) for x in lc.weights()]
    lc.c_step(1e-3)
    both = lc.scores()
    for v, kept in zip(lc.variables, w):
        np.testing.assert_array_equal(v.numpy(), kept)
    d = lc.data

    def error(split):
        x, y = (d.x_train, d.y_train) if split == "train" else (d.x_test, d.y_test)
        return 100 * np.mean(np.argmax(lc.model.predict(x, verbose=0), -1) != y)

    assert both["train_error_w"] == pytest.approx(error("train")) and both["test_error_w"] == pytest.approx(error("test"))
    lc.set_kernels(lc.deltas)
    assert both["train_error_delta"] == pytest.approx(error("train"))
    assert both["test_error_delta"] == pytest.approx(error("test"))
    assert both["train_error_delta"] != both["train_error_w"]


def test_sorted_kmeans_matches_lloyd_over_every_value(rng):
    from kcompress.methods.lc.types.quantization import kmeans_1d

    x = np.concatenate([rng.normal(-1, 0.3, 5000), rng.normal(2, 0.5, 3000), [0.5] * 50])
    codebook = np.quantile(x, [0.1, 0.4, 0.6, 0.9])
    for _ in range(100):  # Lloyd's iteration, written out: assign every value, average
        labels = assign(x, codebook)
        new = np.array([x[labels == j].mean() for j in range(4)])
        if np.allclose(new, codebook, rtol=0, atol=0):
            break
        codebook = new
    got, got_labels = kmeans_1d(x, np.quantile(x, [0.1, 0.4, 0.6, 0.9]))
    np.testing.assert_allclose(got, codebook, rtol=1e-10)
    np.testing.assert_array_equal(got_labels, assign(x, codebook))


def test_low_rank_layers_are_factorised_into_u_and_v(reference):
    from kcompress.backend import keras
    from kcompress.methods.lc.factorize import factorised_model
    from kcompress.core.zoo import build_model

    for model, layer, rank in ((small(reference).model, "dense_2", 10), (build_model("lenet5", (28, 28), 10), "conv_2", 4)):
        shapes = {l.name: tuple(l.kernel.shape) for l in model.layers if hasattr(l, "kernel")}
        task = resolve([parse_task(f"{layer}:lowrank:rank={rank}")], shapes, [])[0]
        kernel = model.get_layer(layer).kernel
        kernel.assign(task.split(task.compression.compress(task.join([kernel.numpy()])))[0])
        new, names = factorised_model(model, [task])
        assert names == [layer]
        u, v = new.get_layer(f"{layer}_u").kernel.numpy(), new.get_layer(layer).kernel.numpy()
        np.testing.assert_allclose(u.reshape(-1, rank) @ v.reshape(rank, -1), task.join([kernel.numpy()]), atol=1e-5)
        x = reference.data.x_test[:64]
        np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), atol=1e-4)
        assert new.count_params() < model.count_params()
        assert isinstance(new.get_layer(f"{layer}_u"), type(model.get_layer(layer)))
        assert not any(isinstance(l, keras.layers.Lambda) for l in new.layers)


def test_compress_api_writes_steps_and_plot(reference_dir, tmp_path):
    from kcompress import api
    from kcompress.pipeline import load_reference

    out = tmp_path / "lc"
    record = api.compress(reference_dir, "lc", out, task=["dense_1:prune-l0:kappa=0.1", "dense_2:lowrank:rank=5",
                                                          "dense_3:quant:k=2"], mu_list="1e-2,1e-1", l_epochs=1)
    lc = record["method"]
    assert [s["mu"] for s in lc["steps"]] == [1e-2, 1e-1] and lc["factorised"] == ["dense_2"]
    assert {"dc", "storage", "tasks"} <= set(lc) and (out / "lc_steps.png").is_file()
    model = load_reference(out).model
    assert len(np.unique(model.get_layer("dense_3").kernel.numpy())) == 2
    assert np.count_nonzero(model.get_layer("dense_1").kernel.numpy()) == round(0.1 * 784 * 300)
    assert model.get_layer("dense_2_u").kernel.shape == (300, 5)
