"""kcompress's LC against the PyTorch LC toolkit, side by side (the toolkit's own script).

Runs ``side_by_side.sh`` of the toolkit peer (same reference weights, data, task and μ
schedule, runs interleaved) with THIS checkout's kcompress, then copies its summary and
per-run lines to ``bench/results/lc_vs_toolkit.json`` / ``.md``. torch must be importable by
``--torch-python`` (``pip install -e .[bench]``).

    python bench/lc_vs_toolkit.py [--tasks prune5,prune1,quant2,quant4] [--reps 2]
        --peer PATH/TO/lc-toolkit (or $LC_TOOLKIT) [--work DIR]

side_by_side.sh wants a python with a ``kcompress`` script beside it; two small wrapper
scripts in ``WORK/bin`` put this checkout first on PYTHONPATH (a stale installed copy of the
package could otherwise be the one measured).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def wrappers(folder):
    """``folder/python`` and ``folder/kcompress`` running this checkout."""
    folder.mkdir(parents=True, exist_ok=True)
    env = f'PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}'
    scripts = {"python": f'{env} exec {sys.executable} "$@"\n',
               "kcompress": f'{env} exec {sys.executable} -c "import sys; from kcompress.cli.main import run; '
                            f'sys.exit(run())" "$@"\n'}
    for name, body in scripts.items():
        path = folder / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(0o755)
    return folder / "python"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="prune5,prune1,quant2,quant4")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--peer", default=os.environ.get("LC_TOOLKIT"), required="LC_TOOLKIT" not in os.environ,
                   help="the LC toolkit's folder (the one holding side_by_side.sh)")
    p.add_argument("--torch-python", default=sys.executable)
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "lc_vs_toolkit"))
    args = p.parse_args()
    work = Path(args.work)
    python = wrappers(work / "bin")
    cmd = ["bash", str(Path(args.peer) / "side_by_side.sh"), str(python), args.torch_python, str(work / "out"),
           args.tasks, str(args.reps)]
    print("$", " ".join(cmd), flush=True)
    cache = work / "xla-cache"  # fresh: the first kcompress run compiles its XLA step, later ones reuse it
    if cache.exists():
        shutil.rmtree(cache)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "KCOMPRESS_XLA_CACHE": str(cache)}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [l for l in run.stdout.splitlines() if l.startswith(("toolkit ", "kcompress ", "reference", "prune", "quant"))]
    print("\n".join(lines))
    if run.returncode != 0:
        sys.exit(f"side_by_side.sh failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
    summary = json.loads((work / "out" / "summary.json").read_text())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lc_vs_toolkit.json").write_text(json.dumps({"command": cmd, "summary": summary}, indent=1))
    table = ["| task | LC s kcompress | LC s toolkit | LC ratio | process s kcompress | process s toolkit | "
             "process ratio | test error kcompress | test error toolkit |", "|---|---|---|---|---|---|---|---|---|"]
    for task, r in summary.items():
        k, t = r["kcompress"], r["toolkit"]
        table.append(f"| {task} | {k['lc_s']:.1f} | {t['lc_s']:.1f} | {r['lc_time_ratio']:.2f} | {k['process_s']:.1f} | "
                     f"{t['process_s']:.1f} | {r['process_time_ratio']:.2f} | {k['test_error']:.2f} | {t['test_error']:.2f} |")
    text = ["# kcompress LC vs the LC toolkit (side_by_side.sh, medians of interleaved runs)", "",
            f"Command: `python bench/lc_vs_toolkit.py --tasks {args.tasks} --reps {args.reps}`", "",
            "kcompress's XLA cache starts empty: its first run (the first task's rep 1) compiles the L-step "
            "(~4 s), every later run reuses it, as a user's second command on the same model does.", "",
            *table, "",
            "Runs:", "", "```", *lines, "```"]
    (RESULTS / "lc_vs_toolkit.md").write_text("\n".join(text) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
