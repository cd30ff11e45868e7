"""LC sweeps (``--sweep NAME=V1,V2``), the prune × clusters grid, and ``kcompress report`` over
an LC sweep, a prune sweep and a learned-index model (ε instead of error %)."""
import csv

import numpy as np
import pytest

from kcompress import api
from kcompress.backend import keras
from kcompress.cli.main import main
from kcompress.core.modeldir import MODEL_FILE

REPORT_COLUMNS = ["model", "method", "setting", "metric", "train", "test", "params", "nonzeros", "distinct",
                  "codebook", "bits_ratio_vs_parent", "bits_ratio_vs_root", "tflite_gzip_bytes"]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def folders(reference_dir, tmp_path_factory):
    """An LC sweep over κ and a prune sweep of the MNIST reference; a pruned learned index."""
    root = tmp_path_factory.mktemp("report")
    lc = api.compress(reference_dir, "lc", root / "lc", task="all:prune-l0:kappa=0.05", sweep="kappa=0.01,0.02",
                      mu_steps=2, l_epochs=1, batch_size=500)
    api.compress(reference_dir, "prune", root / "prune", sparsity="0.5,0.9", epochs=1, batch_size=500)
    api.train(root / "index", model="index64", data="keys:uniform:600", epochs=1, seed=0, verbose=0)
    api.compress(root / "index", "prune", root / "index-p50", sparsity=0.5, epochs=1)
    return root, lc


def test_lc_sweep_substitutes_kappa_and_writes_the_sweep_files(folders):
    root, records = folders
    assert [r["label"] for r in records] == ["kappa0.01", "kappa0.02"]
    for r, kappa in zip(records, (0.01, 0.02)):
        assert r["settings"]["task"] == [f"all:prune-l0:kappa={kappa}"] and r["settings"]["sweep"] == [f"kappa={kappa}"]
        model = keras.models.load_model(root / "lc" / r["label"] / MODEL_FILE, compile=False, safe_mode=True)
        kernels = [l.kernel.numpy() for l in model.layers if hasattr(l, "kernel")]
        size = sum(k.size for k in kernels)
        assert sum(np.count_nonzero(k) for k in kernels) == round(kappa * size)  # all:prune-l0 keeps κ of all
    rows = read_csv(root / "lc" / "sweep.csv")
    assert list(rows[0])[:4] == ["setting", "kappa", "train_error", "test_error"]
    assert [r["setting"] for r in rows] == ["reference", "kappa0.01", "kappa0.02"]
    assert [r["kappa"] for r in rows[1:]] == ["0.01", "0.02"]
    assert float(rows[1]["bits_ratio"]) > float(rows[2]["bits_ratio"]) > 1
    assert (root / "lc" / "sweep.png").stat().st_size > 0


def test_report_over_sweeps_and_a_learned_index(folders, reference_dir, tmp_path, capsys):
    root, _ = folders
    out = tmp_path / "report"
    dirs = [reference_dir, root / "lc", root / "prune", root / "index-p50"]
    assert main(["report", *map(str, dirs), "--no-files", "--out", str(out)]) == 0  # files: test_deployed.py
    rows = read_csv(out / "report.csv")
    assert list(rows[0]) == REPORT_COLUMNS
    by_setting = {(r["method"], r["setting"]): r for r in rows}
    assert set(by_setting) == {("reference", reference_dir.name), ("lc", "kappa0.01"), ("lc", "kappa0.02"),
                               ("prune", "sparsity0.5"), ("prune", "sparsity0.9"), ("reference", "index"),
                               ("prune", "index-p50")}
    assert [r["method"] for r in rows[:2]] == ["reference", "reference"]  # references first
    ref = by_setting[("reference", reference_dir.name)]
    assert ref["bits_ratio_vs_parent"] == ref["bits_ratio_vs_root"] == "1.0"
    assert ref["params"] == "266610" and ref["tflite_gzip_bytes"]
    lc = keras.models.load_model(root / "lc" / "kappa0.01" / MODEL_FILE, compile=False, safe_mode=True)
    assert by_setting[("lc", "kappa0.01")]["nonzeros"] == str(sum(np.count_nonzero(w) for w in lc.get_weights()))
    assert {by_setting[("prune", "index-p50")]["metric"], by_setting[("reference", "index")]["metric"]} == {"ε"}
    assert by_setting[("lc", "kappa0.02")]["metric"] == "error %"
    for data in ("mnist-sample", "keys-uniform-600"):
        for figure in ("error_vs_ratio", "error_vs_params"):
            assert (out / f"{figure}-{data}.png").stat().st_size > 0
    assert not list(out.glob("error_vs_codebook-*.png"))  # nothing here is quantized
    assert "| kappa0.01 |" in capsys.readouterr().out


def test_prune_cluster_sweep_writes_a_grid_with_a_line_per_k(reference_dir, tmp_path):
    out = tmp_path / "pc"
    api.compress(reference_dir, "prune+cluster", out, sparsity="0.5,0.9", clusters="4,8", epochs=1, cluster_epochs=1,
                 batch_size=500)
    grid = read_csv(out / "sweep_grid.csv")
    assert [r["sparsity"] for r in grid] == ["0.5", "0.9"]
    assert list(grid[0]) == ["sparsity", "clusters=4 test_error", "clusters=4 bits_ratio", "clusters=8 test_error",
                             "clusters=8 bits_ratio"]
    sweep = {r["setting"]: r for r in read_csv(out / "sweep.csv")}
    assert grid[1]["clusters=8 test_error"] == sweep["sparsity0.9-clusters8"]["test_error"]
    rows = api.report([out], tmp_path / "r", files=False)
    for r in rows[1:]:  # K shared values per kernel, and the pruned zeros
        assert r["codebook"] - int(r["setting"].split("clusters")[1]) in (0, 1), r["setting"]
    assert (tmp_path / "r" / "error_vs_codebook-mnist-sample.png").stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["report", "nothing-here", "--out", "r"], "nothing-here is not a directory"),
    (["compress", "--from", "x", "--method", "lc", "--task", "all:prune-l0:kappa=0.05", "--sweep", "k=2,4",
      "--out", "o"], "no --task sets k"),
    (["compress", "--from", "x", "--method", "lc", "--task", "all:prune-l0:kappa=0.05", "--sweep", "kappa",
      "--out", "o"], "expected NAME=V1,V2"),
])
def test_bad_report_or_sweep_exits_2_with_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_repeated_task_and_sweep_flags_keep_every_value():
    from kcompress.cli.main import parse
    from kcompress.core.settings import expand
    from kcompress.methods.lc.settings import LCSettings

    _, v = parse(["compress", "--method", "lc", "--task", "dense_1:quant:k=2", "--task", "dense_2:quant:k=2",
                  "--sweep", "k=2,4", "--sweep", "mu_steps=1,2"])
    assert v.pop("method") == "lc"
    runs = expand(LCSettings, v)
    assert [label for label, _ in runs] == ["k2-mu_steps1", "k2-mu_steps2", "k4-mu_steps1", "k4-mu_steps2"]
    assert runs[-1][1].task == ("dense_1:quant:k=4", "dense_2:quant:k=4") and runs[-1][1].mu_steps == 2


def test_model_dirs_walks_sweep_and_tuning_folders_once(tmp_path):
    """A tuning folder's trials are found and its ``best/`` copy is not counted again; a sweep's
    settings come in their numeric order, its staging leftovers are skipped."""
    from kcompress.reporting.collect import model_dirs

    for sub in ("tune/trial_10/model", "tune/trial_9/model", "tune/best", "sweep/clusters16", "sweep/clusters4",
                "sweep/.sweep.partial-x/clusters4", "ref"):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "run.json").write_text('{"settings": {}, "metrics": {}}')
    found = model_dirs([tmp_path / "ref", tmp_path / "sweep", tmp_path / "tune", tmp_path / "ref"])
    assert [str(p.relative_to(tmp_path)) for p in found] == [
        "ref", "sweep/clusters4", "sweep/clusters16", "tune/trial_9/model", "tune/trial_10/model"]
