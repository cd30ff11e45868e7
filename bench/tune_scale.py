"""Trials per minute of one search run by a chief with 1 worker, then with 2 workers, on 127.0.0.1.

The same grid (index64 on learned-index keys, short epochs) runs twice into fresh tuning
directories: ``tune --chief`` plus N ``tune --worker`` processes. Reported: wall time from
start to the chief's exit, trials per minute, and each worker's share of the trials.
Results go to bench/results/tune_scale.json and .md. Usage: ``python bench/tune_scale.py``.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SEARCH = ["tune", "--model", "index64", "--data", "keys:lognormal:20000", "--epochs", "2", "--search", "grid",
          "--space", "lr=1e-3,1e-2", "--space", "loss=mse,lse", "--space", "batch_size=64,256"]
PORT = 18790


def run(workers, out):
    """Run the search with ``workers`` workers; return its timings and who ran which trial."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    base = [sys.executable, "cli.py", *SEARCH, "--out", str(out)]
    start = time.perf_counter()
    chief = subprocess.Popen(base + ["--chief", f"127.0.0.1:{PORT + workers}"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs = [subprocess.Popen(base + ["--worker", f"127.0.0.1:{PORT + workers}", "--tuner-id", f"w{i}"], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(workers)]
    outputs = [p.communicate(timeout=1800)[0] for p in procs]
    chief_out = chief.communicate(timeout=300)[0]
    wall = time.perf_counter() - start
    require_ok = [chief.returncode] + [p.returncode for p in procs]
    if any(require_ok):
        raise SystemExit(f"a process failed ({require_ok}):\n{chief_out[-2000:]}\n" + "\n".join(o[-2000:] for o in outputs))
    trials = {f"w{i}": [line.split()[1] for line in o.splitlines() if line.startswith("trial ")]
              for i, o in enumerate(outputs)}
    n = sum(len(t) for t in trials.values())
    return {"workers": workers, "trials": n, "wall_s": round(wall, 1), "trials_per_min": round(60 * n / wall, 2),
            "per_worker": {k: len(v) for k, v in trials.items()}}


def main():
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="tune-scale-"))
    try:
        rows = [run(w, scratch / f"w{w}") for w in (1, 2)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    speedup = rows[1]["trials_per_min"] / rows[0]["trials_per_min"]
    result = {"search": " ".join(SEARCH), "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "runs": rows,
              "speedup_2_vs_1": round(speedup, 2)}
    (RESULTS / "tune_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| workers | trials | wall s | trials/min | trials per worker |", "|---|---|---|---|---|"]
    lines += [f"| {r['workers']} | {r['trials']} | {r['wall_s']} | {r['trials_per_min']} | {r['per_worker']} |" for r in rows]
    text = (f"# tune_scale\n\n`{result['search']}` on {result['cpus']} CPUs (load average {result['load_avg_1m']:.1f} "
            f"at the end)\n\n" + "\n".join(lines) + f"\n\nspeed-up 2 vs 1 worker: {speedup:.2f}x\n")
    (RESULTS / "tune_scale.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
