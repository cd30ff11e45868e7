"""tfmot pruning, weight sharing and both combined: exact sparsity, ≤ K values, zeros kept,
stripped ≡ wrapped, plain saved models, bit accounting and bad input."""
from dataclasses import replace

import numpy as np
import pytest

from kcompress.backend import keras
from kcompress.cli.main import main
from kcompress.core.modeldir import MODEL_FILE, save_model
from kcompress.core.stats import array_bits, compression_stats
from kcompress.methods.tfmot import cluster, common, fixed_sharing, prune
from kcompress.methods.tfmot.settings import ClusterSettings, PruneSettings
from kcompress.pipeline import clone

KERNELS = ("dense_1", "dense_2", "dense_3")
QUICK = dict(epochs=1, batch_size=100)  # 10 steps per epoch on the 1000-sample subset


def run_method(module, cls, ref, **settings):
    return module.run(replace(ref, model=clone(ref.model)), cls.from_dict({**QUICK, **settings}))


def saved_kernels(model, folder):
    """The kernels as they are in the saved file (not in memory)."""
    save_model(model, folder)
    loaded = keras.models.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    return {name: loaded.get_layer(name).kernel.numpy() for name in KERNELS}


def test_prune_m_by_n_zeroes_two_in_every_four(small):
    result = run_method(prune, PruneSettings, small, m_by_n="2:4")
    kernel = result.model.get_layer("dense_2").kernel.numpy()  # (300, 100): blocks of 4 along the inputs
    blocks = (kernel.T.reshape(100, -1, 4) == 0).sum(axis=-1)
    assert np.all(blocks >= 2)
    assert result.record["pruning"]["sparsity"] == 0.5


def test_cluster_leaves_at_most_k_values_per_kernel(small, tmp_path):
    result = run_method(cluster, ClusterSettings, small, clusters=4, layers="dense_1,dense_2")
    kernels = saved_kernels(result.model, tmp_path)
    assert len(np.unique(kernels["dense_1"])) <= 4 and len(np.unique(kernels["dense_2"])) <= 4
    assert len(np.unique(kernels["dense_3"])) > 4  # not chosen: untouched
    assert result.record["layers"]["untouched"] == ["dense_3"]
    assert result.record["stripped_vs_wrapped_max_rel_diff"] < 1e-6
    assert result.record["clustering"]["zeros_kept_in"] == []  # dense kernels: no value given up to zero
    # tfmot's clustering wrappers train ~20x slower under XLA: the run says it chose the plain graph
    assert not result.record["execution"]["jit_compile"]
    assert "ClusterWeights" in result.record["execution"]["reason"]


def test_prune_keeps_xla(small, monkeypatch):
    """tfmot's pruning wrappers compile with XLA (as fast as without, and the record says so) in a run long
    enough to repay compiling (here: any run)."""
    monkeypatch.setattr("kcompress.training.execution.XLA_MIN_STEPS", 0)
    result = run_method(prune, PruneSettings, small, sparsity=0.5)
    assert result.record["execution"]["jit_compile"] and result.record["execution"]["reason"] == ""


@pytest.mark.parametrize("assignments, clusters, fixed", [("tfmot", 4, False), ("fixed", 4, True), ("tfmot", 2, True)])
def test_clustering_a_pruned_model_keeps_every_zero(small, assignments, clusters, fixed):
    """``--method cluster`` on a pruned model (as in the auto search's lc>cluster chain) keeps the
    zeros of each sparse kernel without being told, with either assignments; tfmot cannot keep
    zeros with K = 2, so such kernels take fixed assignments."""
    settings = {**QUICK, "sparsity": 0.8, "clusters": clusters, "assignments": assignments}
    pruned, _, _ = prune.prune(small, clone(small.model), PruneSettings.from_dict(settings, strict=False))
    zeros = {name: pruned.get_layer(name).kernel.numpy() == 0 for name in KERNELS}  # wrapping changes `pruned`
    plain, _, record = cluster.cluster(small, pruned, ClusterSettings.from_dict(settings, strict=False))
    assert record["clustering"]["zeros_kept_in"] == list(KERNELS)
    assert record["clustering"]["fixed_in"] == (list(KERNELS) if fixed else [])
    for name in KERNELS:
        after = plain.get_layer(name).kernel.numpy()
        assert np.mean(zeros[name]) == pytest.approx(0.8, abs=0.01)
        assert np.all(after[zeros[name]] == 0), name
        assert len(np.unique(after)) <= clusters, name
    assert record["stripped_vs_wrapped_max_rel_diff"] < 1e-6


def test_fixed_assignments_train_the_shared_values_and_keep_the_partition(small):
    """``--assignments fixed``: each weight keeps the value index k-means gave it; the K values move."""
    model = clone(small.model)
    kernel = model.get_layer("dense_2").kernel.numpy()
    codebook, assignments = fixed_sharing.initial_codebook(kernel, 8, keep_zeros=False)
    shapes = [w.shape for w in model.get_weights()]
    settings = ClusterSettings.from_dict({**QUICK, "clusters": 8, "assignments": "fixed", "lr": 1e-3,
                                          "fixed_stages": 1})
    plain, _, record = cluster.cluster(small, model, settings)
    after = plain.get_layer("dense_2").kernel.numpy()
    trained = np.array([after[assignments == j][0] for j in range(8)])
    np.testing.assert_array_equal(after, trained[assignments])  # same partition, one value per index
    assert not np.allclose(trained, codebook)  # the values were trained
    assert record["clustering"]["assignments"] == "fixed" and record["finetune"]["lr"] == 1e-3
    assert [w.shape for w in plain.get_weights()] == shapes  # the layers' weights in their order
    assert record["stripped_vs_wrapped_max_rel_diff"] < 1e-6


def test_staged_fixing_fixes_the_weights_farthest_from_their_value_first():
    """INQ's stages by distance: values (0, 1); weights 0.02, 0.3, 0.55, 0.9, 1.0, 0.48 are 0.02, 0.3, 0.45,
    0.1, 0, 0.48 from their nearest value, so half of them (3) fixed means 0.48 → 0, 0.55 → 1, 0.3 → 0;
    the others keep their own values and train on; a pinned zero is fixed from the start and stays 0."""
    layer = keras.layers.Dense(1, use_bias=False)
    layer.build((None, 7))
    layer.kernel.assign(np.array([[0.02], [0.3], [0.55], [0.9], [1.0], [0.48], [0.0]], np.float32))
    assignments = np.array([[0], [0], [1], [1], [1], [0], [2]])  # the last one: the pinned zero
    shared = fixed_sharing.SharedKernel(layer, {"kernel": np.array([0.0, 1.0])}, {"kernel": assignments},
                                        keep_zeros=True, staged=True)
    shared.build((None, 7))
    in_use = lambda: shared.kernel_in_use("kernel").numpy().ravel()
    np.testing.assert_allclose(in_use(), [0.02, 0.3, 0.55, 0.9, 1.0, 0.48, 0.0], atol=1e-7)  # nothing fixed yet
    shared.fix(0.5)
    np.testing.assert_allclose(in_use(), [0.02, 0.0, 1.0, 0.9, 1.0, 0.0, 0.0], atol=1e-7)
    assert shared.fixed["kernel"].numpy().ravel().tolist() == [0, 1, 1, 0, 0, 1, 1]
    assert any(w is layer.kernel for w in shared.trainable_weights)  # the free weights train
    shared.fix(1.0)
    np.testing.assert_allclose(in_use(), [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0], atol=1e-7)
    assert fixed_sharing.stage_shares(4) == (0.5, 0.75, 0.875, 1.0) and fixed_sharing.stage_shares(1) == (1.0,)


def test_staged_fixed_sharing_ends_with_k_values_and_keeps_the_zeros(small):
    """``--fixed-stages 3`` on a half-pruned model: a stage per epoch, then at most K values per kernel,
    every zero kept, the stripped model computing what the wrapped one did."""
    pruned = clone(small.model)
    for layer in pruned.layers:
        if layer.weights:
            w = layer.kernel.numpy()
            layer.kernel.assign(np.where(np.abs(w) > np.median(np.abs(w)), w, 0))
    zeros = {l.name: l.kernel.numpy() == 0 for l in pruned.layers if l.weights}
    settings = ClusterSettings.from_dict({**QUICK, "epochs": 3, "clusters": 8, "assignments": "fixed",
                                          "codebook": "kmeans", "fixed_stages": 3})
    plain, history, record = cluster.cluster(small, pruned, settings)
    assert record["clustering"]["fixed_stages"] == 3 and len(history["loss"]) == 3
    for name, was_zero in zeros.items():
        kernel = plain.get_layer(name).kernel.numpy()
        assert len(np.unique(kernel)) <= 8 and np.array_equal(kernel[was_zero], np.zeros(was_zero.sum()))
    assert record["stripped_vs_wrapped_max_rel_diff"] < 1e-6


def test_a_symmetric_codebook_for_a_pruned_kernel_gives_each_sign_half_the_values():
    """Pruned non-zeros are two lobes of unequal size (here 12:3): each sign gets ⌊(K − 1)/2⌋ values,
    mirrored magnitudes from k-means on |w|; zeros point at the pinned zero; K = 2 keeps one value."""
    rng = np.random.default_rng(0)
    kernel = np.concatenate([-rng.uniform(0.05, 1.5, 1200), rng.uniform(0.05, 1.5, 300), np.zeros(1500)])
    kernel = rng.permutation(kernel).reshape(60, 50).astype(np.float32)
    codebook, assignments = fixed_sharing.initial_codebook(kernel, 16, keep_zeros=True, symmetric=True)
    assert len(codebook) == 14 and np.allclose(codebook, -codebook[::-1])  # 7 magnitudes, both signs
    values = np.append(codebook, 0)[assignments]
    assert np.array_equal(values == 0, kernel == 0)  # zeros, and only zeros, on the pinned zero
    assert np.array_equal(np.sign(values), np.sign(kernel))  # every weight keeps its sign
    brute = np.abs(kernel[kernel != 0][:, None] - codebook[None, :]).min(axis=1)  # nearest of the values
    np.testing.assert_allclose(np.abs(values - kernel)[kernel != 0], brute, atol=1e-6)
    assert np.sum(codebook > 0) == 7  # the minority sign is not starved (plain k-means: 3 of 15)
    plain, _ = fixed_sharing.initial_codebook(kernel[kernel != 0].reshape(-1, 1), 15, keep_zeros=False)
    assert np.sum(plain > 0) < 7
    two, labels = fixed_sharing.initial_codebook(kernel, 2, keep_zeros=True, symmetric=True)
    assert len(two) == 1 and np.array_equal(labels == 1, kernel == 0)


def test_codebook_auto_trains_both_codebooks_of_a_pruned_kernel_and_keeps_the_better(small):
    """``--codebook auto`` on a pruned model under fixed assignments: k-means and symmetric values
    both fine-tuned from the same model, the lower training error kept; a dense model: k-means only."""
    pruned = clone(small.model)
    for layer in pruned.layers:
        if layer.weights:
            w = layer.kernel.numpy()
            layer.kernel.assign(np.where(np.abs(w) > np.median(np.abs(w)), w, 0))
    settings = ClusterSettings.from_dict({**QUICK, "clusters": 8, "assignments": "fixed"})
    plain, _, record = cluster.cluster(small, pruned, settings)
    errors = record["clustering"]["codebook_train_errors"]
    assert set(errors) == {"kmeans", "symmetric"}
    assert record["clustering"]["codebook"] == min(errors, key=errors.get)
    assert errors[record["clustering"]["codebook"]] == pytest.approx(cluster.train_error(plain, small.data))
    for layer in plain.layers:
        if layer.weights:
            kernel = layer.kernel.numpy()
            assert len(np.unique(kernel)) <= 8 and np.mean(kernel == 0) >= 0.5  # zeros kept, ≤ K values
    dense, _, record = cluster.cluster(small, clone(small.model), settings)
    assert record["clustering"]["codebook"] == "kmeans" and "codebook_train_errors" not in record["clustering"]


def test_assignments_and_recipe_follow_the_reference_task():
    """``--assignments auto``: tfmot's for a classifier, fixed (with their recipe) for a regression
    net; a flag the user gave wins over the recipe."""
    classifier, index = ClusterSettings().for_task("classification"), ClusterSettings().for_task("regression")
    assert (classifier.assignments, classifier.lr, classifier.epochs, classifier.batch_size) == ("tfmot", 1e-4, 10, None)
    assert (index.assignments, index.lr, index.epochs, index.batch_size) == ("fixed", 3e-3, 100, 4096)
    assert (classifier.fixed_stages, index.fixed_stages) == (1, 4)
    assert ClusterSettings(lr=1e-3, epochs=5).for_task("regression").lr == 1e-3


def test_a_kernel_with_fewer_nonzeros_than_clusters_is_kept_frozen_and_listed(small):
    settings = {**QUICK, "sparsity": 0.99, "clusters": 16}  # dense_3 keeps 10 weights: fewer than 16
    pruned, _, _ = prune.prune(small, clone(small.model), PruneSettings.from_dict(settings, strict=False))
    before = pruned.get_layer("dense_3").kernel.numpy().copy()
    plain, _, record = cluster.cluster(small, pruned, ClusterSettings.from_dict(settings, strict=False),
                                       preserve_sparsity=True)
    assert "dense_3" in record["layers"]["skipped"] and "kept as is" in record["layers"]["skipped"]["dense_3"]
    np.testing.assert_array_equal(plain.get_layer("dense_3").kernel.numpy(), before)
    assert np.count_nonzero(before) == 10 and plain.get_layer("dense_3").trainable


def test_layers_tfmot_cannot_wrap_are_skipped_and_listed(small):
    def wrap(layer):
        if layer.name == "dense_2":
            raise ValueError("cannot wrap this one")
        return layer

    _, layers = common.wrap_layers(clone(small.model), ClusterSettings(), wrap)
    assert layers["wrapped"] == ["dense_1", "dense_3"]
    assert layers["skipped"] == {"dense_2": "cannot wrap this one"}


def test_bit_counts_match_hand_computed_examples():
    # dense: 4 distinct non-zeros -> 4 floats
    assert array_bits(np.array([1.0, 2.0, 3.0, 4.0])) == (128, "dense")
    # sparse: 16 weights, non-zeros at 3 and 10 (gaps 4, 7 -> 3 bits each) -> 2·32 + 2·3 = 70
    w = np.zeros(16)
    w[3], w[10] = 1.5, -2.5
    assert array_bits(w) == (70, "sparse")
    # sparse + shared: 100 weights, 10 non-zeros every 10th (gaps ≤ 10 -> 4 bits each = 40),
    # 2 shared values -> 1 bit each + 2·32 codebook: 40 + 10 + 64 = 114
    w = np.zeros(100)
    w[::10] = [0.5, -0.5] * 5
    assert array_bits(w) == (114, "sparse+shared")
    # relative indices with a filler (Han et al.): 200 weights, 11 non-zeros at 0, 2, ..., 18 and 199,
    # 3 shared values. Best: b = 6 bits per gap, the gap of 181 takes 2 fillers; zero gets a code,
    # so 4 codes -> 2 bits per entry: 13·6 + 2·2 (fillers) + 11·2 (values) + 3·32 (codebook) = 200
    w = np.zeros(200)
    w[[*range(0, 20, 2), 199]] = [0.5, -0.5, 0.25] * 3 + [0.5, -0.5]
    assert array_bits(w) == (200, "sparse+shared")
    # shared: 8 weights, 2 values -> 8·1 + 2·32 = 72
    assert array_bits(np.array([0.5, -0.5] * 4)) == (72, "shared")


def test_bits_ratio_of_a_pruned_and_clustered_model(small):
    """Kernel (784·300) at 95 % zeros, 3 shared non-zero values: the ratio follows from §7."""
    model = clone(small.model)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.weights:
            k, b = layer.get_weights()
            mask = rng.random(k.shape) < 0.05
            layer.set_weights([np.where(mask, rng.choice([-0.1, 0.05, 0.2], k.shape), 0.0), b])
    stats = compression_stats(model, small.model)
    for row in stats["layers"]:
        assert row["arrays"]["kernel"]["encoding"] == "sparse+shared"
        assert row["arrays"]["bias"]["bits"] == 32 * row["arrays"]["bias"]["params"]
    total_ref = 32 * sum(w.size for w in small.model.get_weights())
    assert stats["total"]["reference_bits"] == total_ref
    assert stats["total"]["bits_ratio"] == pytest.approx(total_ref / stats["total"]["bits"])
    assert stats["total"]["bits_ratio"] > 40


@pytest.mark.parametrize("flags, message", [
    (["--method", "prune", "--sparsity", "1.0"], "--sparsity must be in [0, 1)"),
    (["--method", "prune", "--sparsity", "-0.1"], "--sparsity must be in [0, 1)"),
    (["--method", "prune", "--sparsity", "0.5,1.5"], "--sparsity must be in [0, 1)"),
    (["--method", "cluster", "--clusters", "1"], "--clusters must be at least 2"),
    (["--method", "prune+cluster", "--clusters", "x"], "--clusters 'x'"),
    (["--method", "lc", "--epochs", "3"], "unrecognized arguments: --epochs"),
    (["--method", "prune", "--m-by-n", "4:2"], "--m-by-n 4:2"),
    (["--method", "nosuch"], "unknown --method 'nosuch'"),
])
def test_bad_input_exits_2_with_one_line(reference_dir, tmp_path, capsys, flags, message):
    code = main(["compress", "--from", str(reference_dir), "--out", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_from_dir_exits_2(tmp_path, capsys):
    code = main(["compress", "--from", str(tmp_path / "nothing"), "--method", "prune", "--out", str(tmp_path / "o")])
    assert code == 2 and "--from" in capsys.readouterr().err


def test_prune_sweep_saves_plain_models_with_exact_sparsity_and_a_table(reference_dir, tmp_path):
    """One sweep 0 %, 50 %, 99 %: each saved model holds exactly that many zeros per kernel."""
    from kcompress import api

    out = tmp_path / "sweep"
    records = api.compress(reference_dir, "prune", out, sparsity="0,0.5,0.99", epochs=1, batch_size=500)
    assert [r["label"] for r in records] == ["sparsity0", "sparsity0.5", "sparsity0.99"]
    for r in records:
        sparsity = float(r["settings"]["sparsity"])
        model = keras.models.load_model(out / r["label"] / MODEL_FILE, compile=False, safe_mode=True)
        assert all(type(l).__name__ != "PruneLowMagnitude" for l in model.layers)
        for name in KERNELS:
            kernel = model.get_layer(name).kernel.numpy()
            assert abs(np.sum(kernel == 0) - round(sparsity * kernel.size)) <= 1, (r["label"], name)
        assert r["method"]["stripped_vs_wrapped_max_rel_diff"] < 1e-6
        assert r["method"]["layers"]["wrapped"] == list(KERNELS)
    csv = (out / "sweep.csv").read_text().splitlines()
    assert csv[0] == ("setting,sparsity,train_error,test_error,params,nonzeros,distinct,codebook,bits_ratio,"
                      "tflite_gzip_bytes") and len(csv) == 5
    assert (out / "sweep.png").is_file() and (out / "sweep.md").is_file()
    ratios = [r["compression"]["total"]["bits_ratio"] for r in records]
    assert ratios == sorted(ratios) and ratios[0] == pytest.approx(1.0)


def test_cluster_of_a_learned_index_keeps_its_best_epsilon_epoch(tmp_path):
    import json

    from kcompress import api

    api.train(tmp_path / "index", model="index64", data="keys:uniform:600", epochs=1, seed=0, verbose=0)
    api.compress(tmp_path / "index", "cluster", tmp_path / "c8", clusters=8, epochs=2, fixed_stages=1)
    run = json.loads((tmp_path / "c8" / "run.json").read_text())
    best = next(v["best_checkpoint"] for v in _walk(run) if "best_checkpoint" in v)
    per_epoch = [best["start_max_error"], *best["max_error_per_epoch"]]  # epoch 0: the k-means start
    assert best["epochs_run"] == 2 and best["best_max_error"] == min(per_epoch)
    assert best["best_epoch"] == per_epoch.index(best["best_max_error"])
    # the saved (stripped) model is the best epoch's: its ε is the best one
    assert abs(run["metrics"]["max_error"] - best["best_max_error"]) < 1e-3 * max(1.0, best["best_max_error"])


def _walk(d):
    if isinstance(d, dict):
        yield d
        for v in d.values():
            yield from _walk(v)
    elif isinstance(d, list):
        for v in d:
            yield from _walk(v)


def test_best_epsilon_keeps_the_starting_point_when_no_epoch_beats_it():
    """ε 0 at the start (the model is the targets' own function), then an epoch that breaks it: restored."""
    from kcompress.core.data import Dataset

    x = np.linspace(0, 1, 50, dtype=np.float32).reshape(-1, 1)
    data = Dataset("line", x, 2 * x, x, 2 * x, x, 2 * x, task="regression")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.set_weights([np.array([[2.0]], np.float32), np.zeros(1, np.float32)])
    best = common.BestMaxError(data)
    best.set_model(model)
    best.on_train_begin()
    model.set_weights([np.array([[3.0]], np.float32), np.zeros(1, np.float32)])  # ε 1 after "epoch 1"
    best.on_epoch_end(0)
    best.on_train_end()
    assert model.get_weights()[0][0, 0] == 2.0
    assert best.record()["best_epoch"] == 0 and best.record()["start_max_error"] == 0


def test_the_codebook_of_a_small_kernel_is_the_optimal_k_means():
    """A learned index's weights on the key's bits: a ladder 1, 2, 4 … 2048 beside 52 near-zero weights.
    16 values keep all 12 steps (the optimum: 4 values left for the cloud near zero); Lloyd's algorithm
    from quantiles spends most values on the cloud. Small sets against every partition, by brute force."""
    import itertools

    from kcompress.core.kmeans import exact_codebook, kmeans_1d

    rng = np.random.default_rng(0)
    ladder = np.concatenate([2.0 ** np.arange(12), rng.normal(0, 0.01, 52)])
    codebook, _ = fixed_sharing.initial_codebook(ladder.reshape(8, 8), 16, keep_zeros=False)
    assert set(2.0 ** np.arange(12)) <= {float(np.round(c, 6)) for c in codebook}
    quantiles, _ = kmeans_1d(ladder, np.quantile(ladder, (np.arange(16) + 0.5) / 16))
    assert np.sum(quantiles > 0.5) < 12
    for _ in range(30):
        x, k = rng.normal(size=9) * rng.choice([1, 10], 9), int(rng.integers(1, 5))
        v = np.sort(x)
        brute = min(sum(((p - p.mean()) ** 2).sum() for p in np.split(v, cuts))
                    for cuts in itertools.combinations(range(1, 9), k - 1))
        c = exact_codebook(x, k)
        assert len(c) == k and ((x[:, None] - c[None]) ** 2).min(axis=1).sum() == pytest.approx(brute, abs=1e-9)
