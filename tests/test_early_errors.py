"""Usage and file errors that need no TensorFlow answer at once: exit 2, one line, TensorFlow never
imported, in under a second of wall time (the best of two runs, so that a busy machine's stall is
not counted)."""
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = ("import sys\nfrom kcompress.cli.main import main\n"
           "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
           "print('tensorflow' in sys.modules, code)")


def keras_file(path, layers=()):
    """A ``.keras`` zip holding only its config, as far as kcompress reads one before TensorFlow loads."""
    config = {"class_name": "Functional", "config": {"name": "m", "layers": [{"class_name": c, "config": {}}
                                                                             for c in layers]}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
    return path


@pytest.fixture
def files(tmp_path):
    (tmp_path / "ref").mkdir()
    for name in ("model.keras", "run.json"):
        (tmp_path / "ref" / name).write_text("{}")
    (tmp_path / "taken").mkdir()
    np.savez(tmp_path / "wrong.npz", x=np.zeros(3), y=np.zeros(3))
    (tmp_path / "text.npz").write_text("not an npz")
    (tmp_path / "bad.yaml").write_text("epochs: [1,\n")
    keras_file(tmp_path / "my.keras", ["Dense"])
    keras_file(tmp_path / "lambda.keras", ["Lambda"])
    return tmp_path


CASES = {  # name: (argv with {t} for the folder, what the one line says)
    "missing --from": ("compress --from {t}/nope --method prune --out {t}/o", "no such file or directory"),
    "existing --out": ("train --out {t}/taken", "already exists"),
    "--out inside --from": ("compress --from {t}/ref --method prune --out {t}/ref/p", "overlap"),
    "npz keys": ("train --data {t}/wrong.npz --out {t}/o", "lacks array(s) x_train"),
    "not an npz": ("compress --from {t}/my.keras --data {t}/text.npz --method prune --out {t}/o", "not an npz file"),
    "bare model, no --data": ("export --from {t}/my.keras --out {t}/o", "give --data"),
    "a Lambda layer": ("evaluate --from {t}/lambda.keras --data mnist-sample", "Lambda"),
    "unknown data": ("compress --from {t}/ref --data cifar --method prune --out {t}/o", "unknown --data"),
    "bad YAML": ("train --config {t}/bad.yaml --out {t}/o", "bad.yaml"),
    "unknown flag": ("compress --method prune --bogus", "unrecognized arguments: --bogus"),
}


@pytest.mark.parametrize("case", CASES)
def test_error_answers_before_tensorflow_in_under_a_second(case, files):
    argv, says = CASES[case]
    argv = argv.format(t=files).split()
    seconds = []
    for _ in range(2):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", SNIPPET, *argv], capture_output=True, text=True, cwd=ROOT)
        seconds.append(time.perf_counter() - t)
    assert proc.stdout.split() == ["False", "2"], (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kcompress: error: ") and says in lines[0], lines
    assert not lines[0].startswith("kcompress: error: kcompress")
    assert min(seconds) < 1.0, seconds
    assert not (files / "o").exists()
