"""Model directories (``core/modeldir.py``): nothing lost, nothing silently wrong. An ``--out`` that cannot
eat the model it reads or a user's folder, one writer per ``--out`` (a dead one's lock taken over, only dead
processes' staging removed), a record that stays true in a chain and after its model file is replaced, a
``run.json`` that is not a record refused, and inputs refused with one line rather than inside TensorFlow."""
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kcompress import api
from kcompress.cli.main import main
from kcompress.core.modeldir import MODEL_FILE, out_lock, read_run, RUN_FILE, staged_dir
from kcompress.core.zoo import build_model
from kcompress.errors import UsageError


ROOT = Path(__file__).resolve().parents[1]

def digests(folder):
    """``{relative path: sha1}`` of every file under ``folder``."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kcompress: error:"), err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def model_copy(reference_dir, tmp_path):
    """A copy of the session reference, so that a test that went wrong cannot hurt the others."""
    return Path(shutil.copytree(reference_dir, tmp_path / "m"))


@pytest.mark.parametrize("argv", [
    ["compress", "--from", "{m}", "--method", "prune", "--sparsity", "0.5", "--epochs", "1", "--out", "{m}"],
    ["compress", "--from", "{m}", "--method", "prune", "--sparsity", "0.5", "--epochs", "1", "--out", "{m}/inside"],
    ["compress", "--from", "{m}", "--method", "prune", "--sparsity", "0.5", "--epochs", "1", "--out", "{m}/.."],
    ["export", "--from", "{m}", "--out", "{m}"],
    ["import", "{m}/model.keras", "--data", "mnist-sample", "--out", "{m}"],
])
def test_out_never_overlaps_from_and_the_model_survives(argv, model_copy, capsys):
    before = digests(model_copy.parent)
    assert main([a.format(m=model_copy) for a in argv] + ["--overwrite"]) == 2
    one_line_error(capsys, "overlap")
    assert digests(model_copy.parent) == before


def test_overwrite_replaces_only_what_kcompress_wrote(tmp_path, capsys):
    mine = tmp_path / "my_folder"
    mine.mkdir()
    (mine / "thesis.tex").write_text("three years of work")
    argv = ["train", "--data", "mnist-sample", "--epochs", "1", "--out", str(mine), "--overwrite"]
    assert main(argv) == 2
    one_line_error(capsys, "thesis.tex", "did not write")
    assert (mine / "thesis.tex").read_text() == "three years of work" and len(list(mine.iterdir())) == 1
    (mine / "thesis.tex").unlink()  # an empty folder may be replaced
    assert main(argv) == 0 and (mine / RUN_FILE).is_file()


def test_a_sweep_that_repeats_a_value_is_refused_before_it_runs(reference_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["compress", "--from", str(reference_dir), "--method", "prune", "--sparsity", "0.5,0.5",
                 "--out", str(out)]) == 2
    one_line_error(capsys, "same run twice")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_images_too_small_for_the_model_name_the_models_that_fit(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=rng.random((40, 8, 8, 1), np.float32), y_train=np.arange(40) % 4,
             x_test=rng.random((8, 8, 8, 1), np.float32), y_test=np.arange(8) % 4)
    assert main(["train", "--data", str(path), "--model", "lenet5", "--out", str(tmp_path / "m")]) == 2
    one_line_error(capsys, "lenet5 needs images of at least 12×12, got 8×8", "lenet300, convnet")


def test_a_bad_tasks_file_entry_names_the_file_and_the_entry(reference_dir, tmp_path, capsys):
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("tasks:\n  - all:prune-l0:kappa=0.05\n  - epochs\n")
    assert main(["compress", "--from", str(reference_dir), "--method", "lc", "--tasks-file", str(tasks),
                 "--out", str(tmp_path / "lc")]) == 2
    one_line_error(capsys, f"--tasks-file {tasks}, task 2 'epochs'", "expected LAYERS:COMPRESSION")


def test_an_out_that_cannot_be_created_is_the_users_setting(reference_dir, tmp_path, monkeypatch, capsys):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    out = tmp_path / "ro" / "sub" / "p"
    assert main(["compress", "--from", str(reference_dir), "--method", "prune", "--sparsity", "0.5",
                 "--out", str(out)]) == 2
    one_line_error(capsys, "Read-only file system")
    assert not (tmp_path / "ro").exists()


def test_report_gives_ratios_against_the_parent_and_the_root_of_a_chain(reference_dir, tmp_path):
    pruned = api.compress(reference_dir, "prune", tmp_path / "p", sparsity=0.5, epochs=1, batch_size=500)
    clustered = api.compress(tmp_path / "p", "cluster", tmp_path / "pc", clusters=4, epochs=1, batch_size=500)
    root_bits = pruned.compression["total"]["reference_bits"]
    bits = clustered.compression["total"]["bits"]
    assert clustered["root"] == {"path": str(reference_dir), "bits": root_bits}
    assert clustered.compression["total"]["root_bits_ratio"] == pytest.approx(root_bits / bits)
    rows = {r["model"]: r for r in api.report([reference_dir, tmp_path / "p", tmp_path / "pc"], tmp_path / "r", files=False)}
    chained = rows[str(tmp_path / "pc")]
    assert chained["bits_ratio"] == pytest.approx(clustered.compression["total"]["reference_bits"] / bits)
    assert chained["root_bits_ratio"] == pytest.approx(root_bits / bits) and chained["root_bits_ratio"] > \
        chained["bits_ratio"] * 1.5  # the pruning's halving is counted against the root, not the parent
    assert rows[str(tmp_path / "p")]["root_bits_ratio"] == pytest.approx(rows[str(tmp_path / "p")]["bits_ratio"])
    header = (tmp_path / "r" / "report.md").read_text().splitlines()[2]
    assert "bits_ratio_vs_parent" in header and "bits_ratio_vs_root" in header


def test_report_measures_again_a_model_whose_file_was_replaced(reference_dir, tmp_path, capsys):
    api.compress(reference_dir, "prune", tmp_path / "p", sparsity=0.9, epochs=1, batch_size=500)
    stale = json.loads((tmp_path / "p" / RUN_FILE).read_text())["metrics"]["test_error"]
    shutil.copy(reference_dir / MODEL_FILE, tmp_path / "p" / MODEL_FILE)  # the user swaps the file
    capsys.readouterr()
    rows = api.report([tmp_path / "p"], tmp_path / "r", files=False)
    row = next(r for r in rows if r["model"] == str(tmp_path / "p"))
    assert row["test"] == pytest.approx(api.evaluate(tmp_path / "p")["test_error"])
    assert row["test"] != pytest.approx(stale) and row["bits_ratio"] is None and row["nonzeros"] is None
    assert "measured again" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "holds a JSON list, not a kcompress run record"),
    ("{}", "has no settings"),
])
def test_run_json_that_is_not_a_run_record_is_a_usage_error(tmp_path, content, message):
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(UsageError, match=message) as e:
        read_run(tmp_path)
    assert str(tmp_path / "run.json") in str(e.value)


def test_run_json_without_a_data_spec_says_so(tmp_path, capsys):
    model = build_model("lenet300", (4,), 2, hidden=(3,))
    model.save(tmp_path / "model.keras")
    (tmp_path / "run.json").write_text(json.dumps({"settings": {"model": "lenet300"}}))
    assert main(["evaluate", "--from", str(tmp_path)]) == 2
    assert "does not say which data the model was made with (no data_spec); give --data" in capsys.readouterr().err


def _holder(out):
    """A second process that holds the lock of ``out`` until it is killed."""
    code = ("import sys, time\nfrom kcompress.core.modeldir import out_lock\n"
            f"with out_lock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_exits_2_at_once_and_a_dead_ones_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / "m"
    proc = _holder(out)
    try:
        assert main(["train", "--epochs", "1", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"--out {out} is being written by pid {proc.pid}" in err and "-c" in err
        with pytest.raises(UsageError, match=f"pid {proc.pid}"):
            with staged_dir(out):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (tmp_path / ".m.lock").exists()  # left by the killed process
    with out_lock(out):
        assert f"pid {os.getpid()}" in (tmp_path / ".m.lock").read_text()
    assert f"lock {tmp_path / '.m.lock'} of pid {proc.pid}" in capsys.readouterr().err
    assert not (tmp_path / ".m.lock").exists()


def test_staging_removes_only_partial_folders_of_dead_processes(tmp_path):
    import platform

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = platform.node()
    live_partial = tmp_path / f".m.partial-{host}~{os.getppid()}-abc"
    dead_partial = tmp_path / f".m.partial-{host}~{dead.pid}-abc"
    live_partial.mkdir()
    dead_partial.mkdir()
    with staged_dir(tmp_path / "m") as tmp:
        (tmp / "f").write_text("x")
    assert live_partial.exists() and not dead_partial.exists() and (tmp_path / "m" / "f").exists()


class Killed(BaseException):
    """Stands in for SIGKILL: Keras Tuner catches Exception, not this."""
