"""The one pipeline: compression trials (in memory, with plots), a Hyperband search of LC,
prune+cluster's run(), the demo end to end (shortened), and model directories that carry
their data spec through a chain of compressions."""
import json
from dataclasses import replace

import numpy as np
import pytest

from kcompress import api
from kcompress.cli.main import main
from kcompress.pipeline import clone, load_reference

TINY_LC = {"task": ["all:prune-l0:kappa=0.2"], "mu0": 1e-2, "mu_factor": 10, "mu_steps": 2, "l_epochs": 1}


def test_compress_trial_writes_a_full_model_directory_and_scores_in_memory(reference_dir, tmp_path):
    from kcompress.tuning.trials import CompressTrial

    trial = CompressTrial(reference_dir, "prune", seed=0, base={"epochs": 1, "batch_size": 500})
    metrics = trial.run({"sparsity": 0.5}, tmp_path / "trial_0")
    model_dir = tmp_path / "trial_0" / "model"
    run = json.loads((model_dir / "run.json").read_text())
    assert run["settings"]["sparsity"] == 0.5 and run["settings"]["epochs"] == 1
    assert (model_dir / "training.png").is_file() and (model_dir / "confusion.png").is_file()
    assert metrics["test_error"] == pytest.approx(run["metrics"]["test_error"])
    assert {"val_error", "val_loss", "bits_ratio", "seconds"} <= set(metrics)
    command = trial.command({"sparsity": 0.5}, "models/best")
    assert command[:2] == ["kcompress", "compress"] and "--sparsity" in command and "False" not in command
    assert trial.config({"sparsity": 0.5})["method"] == "prune"


def test_hyperband_search_of_lc_scales_its_mu_steps(reference_dir, tmp_path, capsys):
    flags = ["--task", "all:prune-l0:kappa=0.2", "--mu0", "1e-2", "--mu-factor", "10", "--l-epochs", "1",
             "--mu-steps", "3", "--batch-size", "500"]
    code = main(["tune", "--from", str(reference_dir), "--method", "lc", "--search", "hyperband",
                 "--space", "lr=0.01,0.05", "--out", str(tmp_path / "hb"), *flags])
    assert code == 0, capsys.readouterr().err
    runs = [json.loads(p.read_text()) for p in (tmp_path / "hb").glob("trial_*/model/run.json")]
    assert len(runs) >= 2 and {r["settings"]["mu_steps"] for r in runs} <= {1, 2, 3}  # Hyperband's rounds
    assert all(len(r["method"]["steps"]) == r["settings"]["mu_steps"] for r in runs)
    command = (tmp_path / "hb" / "best_command.txt").read_text()
    assert command.startswith("kcompress compress --from ") and "--method lc" in command


def test_prune_cluster_run_keeps_zeros_and_merges_both_stage_histories(reference):
    from kcompress.methods.tfmot import prune_cluster
    from kcompress.methods.tfmot.settings import PruneClusterSettings

    d = reference.data
    small = replace(reference, model=clone(reference.model),
                    data=replace(d, x_train=d.x_train[:500], y_train=d.y_train[:500]))
    settings = PruneClusterSettings.from_dict({"sparsity": 0.8, "clusters": 4, "epochs": 2, "cluster_epochs": 1,
                                               "batch_size": 100})
    result = prune_cluster.run(small, settings)
    for name in ("dense_1", "dense_2"):
        kernel = result.model.get_layer(name).kernel.numpy()
        assert np.mean(kernel == 0) == pytest.approx(0.8, abs=0.01) and len(np.unique(kernel)) <= 4
    assert result.record["stage_epochs"] == [2, 1] and len(result.history["loss"]) == 3


def test_a_chain_of_compressions_remembers_its_data(tmp_path):
    """Tabular user data: train -> prune -> cluster -> evaluate and export, no --data anywhere."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 20)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    np.savez(tmp_path / "tab.npz", x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    api.train(tmp_path / "ref", model="lenet300", data=str(tmp_path / "tab.npz"), hidden="32", epochs=2, verbose=0)
    api.compress(tmp_path / "ref", "prune", tmp_path / "p", sparsity=0.5, epochs=1)
    api.compress(tmp_path / "p", "cluster", tmp_path / "pc", clusters=4, epochs=1)
    run = json.loads((tmp_path / "pc" / "run.json").read_text())
    assert run["data_spec"]["data"] == str(tmp_path / "tab.npz") and run["train"]["loss"] is None
    assert load_reference(tmp_path / "pc").data.input_shape == (20,)
    assert api.evaluate(tmp_path / "pc")["test_error"] == pytest.approx(run["metrics"]["test_error"])
    report = api.export(tmp_path / "pc", tmp_path / "e", tflite_modes="float32")
    assert report["passed"] and report["n_test"] == 100


def test_demo_runs_the_whole_path(tmp_path):
    from kcompress.api import DemoSettings
    from kcompress.walkthrough import run_demo

    steps = (("pruned", "prune", {"sparsity": 0.5, "epochs": 1}),
             ("lc", "lc", TINY_LC))
    auto = {"objective": "bits", "max_error_increase": 100.0, "methods": "cluster", "search": "random",
            "max_trials": 1, "space": ["cluster.epochs=1"]}
    table = run_demo(DemoSettings(out=str(tmp_path / "m"), exported=str(tmp_path / "e"), epochs=1), steps=steps,
                     auto=auto)
    assert table.count("| pass |") == 3
    assert (tmp_path / "m" / "summary.md").is_file() and (tmp_path / "e" / "lc" / "model.onnx").is_file()
    assert "deployment check: pass" in (tmp_path / "m" / "auto" / "summary.md").read_text()


def test_a_model_file_replaced_after_its_record_is_measured_again(reference_dir, tmp_path, capsys):
    """run.json carries the digest of the weights it was written for; a directory whose model
    file was overwritten since (as the LC side-by-side script does) is not trusted for its
    metrics or its TFLite size."""
    import shutil

    from kcompress.core.modeldir import save_model
    from kcompress.core.objectives import evaluate_model

    folder = tmp_path / "replaced"
    shutil.copytree(reference_dir, folder)
    recorded = json.loads((folder / "run.json").read_text())
    assert recorded["weights_sha1"]
    assert load_reference(folder).run.metrics == recorded["metrics"] and not capsys.readouterr().err
    model = load_reference(folder).model
    model.set_weights([w * 0.5 for w in model.get_weights()])
    save_model(model, folder)
    ref = load_reference(folder)
    assert "holds other weights than its run.json was written for" in capsys.readouterr().err
    assert ref.run.metrics == evaluate_model(ref.model, ref.data) != recorded["metrics"]
    assert ref.run.tflite is None and "tflite" not in ref.run.to_dict()
