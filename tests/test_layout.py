"""The architecture holds: no import cycle, nothing below api/cli imports them, small modules,
instant help without TensorFlow, quiet start-up, and typed settings behind every flag."""
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "kcompress"


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(extra=None):
    """``{module: {imported kcompress modules}}``, module- and function-level imports alike; ``extra``: more
    modules, ``{name: source}``, as if they were in the package."""
    modules = {module_name(p): p.read_text() for p in PKG.rglob("*.py")} | (extra or {})
    graph = {}
    for name, source in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for n in names:
                while n and n not in modules:
                    n = n.rpartition(".")[0]
                if n and n not in (name, "kcompress"):
                    targets.add(n)
        graph[name] = targets
    return graph


# The code map's layers, bottom to top (CONTRIBUTING.md, "Code map"): a module imports only from its own layer or
# below. The package's __init__ re-exports the API lazily and is left out.
LAYERS = (("kcompress.errors",), ("kcompress.backend", "kcompress.core"), ("kcompress.training",),
          ("kcompress.reporting",), ("kcompress.deploy",), ("kcompress.methods",), ("kcompress.keras",),
          ("kcompress.pipeline",),
          ("kcompress.tuning",), ("kcompress.api", "kcompress.walkthrough"), ("kcompress.cli", "kcompress.__main__"))


def layer_of(module):
    """The index in :data:`LAYERS` of ``module`` (its longest matching prefix)."""
    found = [(len(p), i) for i, prefixes in enumerate(LAYERS) for p in prefixes
             if module == p or module.startswith(p + ".")]
    assert found, f"{module} is in no layer of the code map"
    return max(found)[1]


def upward_imports(graph):
    return sorted((m, t) for m, ts in graph.items() if m != "kcompress" for t in ts if layer_of(t) > layer_of(m))


def test_no_import_cycle_and_no_upward_import():
    graph = import_graph()
    assert not upward_imports(graph)
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph[node]:
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join(path + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_the_layer_test_catches_a_bad_import():
    """A ``deploy`` module that imports the pipeline (one layer up) inside a function is caught."""
    probe = {"kcompress.deploy.probe": "def f():\n    from kcompress.pipeline import load_reference\n"}
    assert upward_imports(import_graph(probe)) == [("kcompress.deploy.probe", "kcompress.pipeline")]


def test_every_import_inside_a_function_says_why():
    """An import is at the top of its module unless a comment on it (or on the first of its group of
    imports) says why it waits: TensorFlow, a runtime or a converter loading only when work needs it."""
    silent = []
    for path in PKG.rglob("*.py"):
        lines = path.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                block = [n for n in fn.body if isinstance(n, (ast.Import, ast.ImportFrom))]
                for k, node in enumerate(block):
                    grouped = k > 0 and node.lineno == block[k - 1].lineno + 1
                    if "#" not in lines[node.lineno - 1] and not grouped:
                        silent.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not silent


def test_small_top_level_and_small_modules():
    top = [p for p in PKG.glob("*.py")]
    assert len(top) <= 12, sorted(p.name for p in top)
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long


@pytest.mark.parametrize("argv", [["--help"], ["compress", "--help"], ["tune", "--help"],
                                  ["compress", "--method", "lc", "--help"], ["train", "--epochs", "0", "--out", "x"]])
def test_help_and_usage_errors_import_no_tensorflow(argv):
    code = ("import sys\nfrom kcompress.cli.main import main\n"
            f"try:\n    code = main({argv!r})\nexcept SystemExit as e:\n    code = e.code\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\nprint('exit', code)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("exit 0") or "exit 2" in proc.stdout


def test_help_shows_each_default_once():
    from kcompress.cli.parsers import build_parser

    text = build_parser("pruner").commands["compress"].format_help()
    assert text.count("(default: 0.35)") == 1 and "(default: None)" not in text
    assert "--no-pruning-loss-only" in text and "--pruning-loss-only" in text


def test_tensorflow_start_up_lines_are_hidden_and_the_quick_exit_keeps_the_output(reference_dir, tmp_path):
    """A command that loads TensorFlow prints only its own lines (``--verbose`` would show TF's; an
    int8 export, the converter's and LiteRT's notices too); the console script leaves with ``os._exit``
    once done, after flushing every line and with its exit code (0 here, 2 for a user's mistake found
    after TensorFlow loaded)."""
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "evaluate", "--from", str(reference_dir)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "" and proc.stdout.startswith("evaluated ")
    assert "test_error" in proc.stdout and proc.stdout.endswith("\n")
    export = subprocess.run([sys.executable, str(ROOT / "cli.py"), "export", "--from", str(reference_dir), "--out",
                             str(tmp_path / "e"), "--formats", "tflite", "--tflite-modes", "int8"],
                            capture_output=True, text=True, cwd=ROOT)
    assert export.returncode == 0 and export.stderr == "", export.stderr
    arrays = {k: np.zeros((4, 3), np.float32) for k in ("x_train", "x_test")}
    np.savez(tmp_path / "narrow.npz", **arrays, y_train=np.arange(4) % 2, y_test=np.arange(4) % 2)
    bad = subprocess.run([sys.executable, str(ROOT / "cli.py"), "evaluate", "--from", str(reference_dir),
                          "--data", str(tmp_path / "narrow.npz")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.startswith("kcompress: error: --data: samples of shape (3,)")
    assert bad.stderr.endswith("\n")


def test_every_method_declares_typed_settings():
    from kcompress.core.settings import expand
    from kcompress.methods import REGISTRY, settings_class

    for name in REGISTRY:
        cls = settings_class(name)
        assert cls.NAME == name and cls.RUNNER and cls.HELP
        if name != "lc":
            defaults = cls()  # the defaults are valid settings
            assert defaults.validate() is defaults
    runs = expand(settings_class("prune+cluster"), {"sparsity": "0.5,0.9", "clusters": [4, 8]})
    assert [label for label, _ in runs] == ["sparsity0.5-clusters4", "sparsity0.5-clusters8",
                                             "sparsity0.9-clusters4", "sparsity0.9-clusters8"]
    assert runs[-1][1].sparsity == 0.9 and runs[-1][1].clusters == 8
