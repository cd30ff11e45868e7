"""Learned-index compression across references: do the default settings keep ε on any reference?

Trains the README's learned-index reference (index64 on keys:lognormal:100000) with several seeds,
then compresses each with default flags — 16 shared values, 8 shared values, 50 % pruning + 16 values —
and reports every seed's ε ratio (compressed ε / reference ε) and the median per setting, against the
targets: median ≤ 1.3× for 16 values and for 50 % + 16 values, ≤ 3× for 8 values. About 6 min per seed on 2 cores.

    python bench/index_seeds.py [--seeds 0,1,2] [--out models/index-seeds]
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import kcompress  # noqa: F401
from kcompress import api
from kcompress.core.modeldir import read_run
from kcompress.reporting.tables import write_table

RESULTS = Path("bench/results")
REFERENCE = dict(model="index64", data="keys:lognormal:100000", hidden="64,64", loss="lse", optimizer="adam",
                 lr=3e-3, lr_schedule="plateau", batch_size=256, epochs=100)
# (label, method, settings, target ratio of the median)
SETTINGS = (("16 values", "cluster", {"clusters": 16}, 1.3),
            ("8 values", "cluster", {"clusters": 8}, 3.0),
            ("50 % + 16 values", "prune+cluster", {"sparsity": 0.5, "clusters": 16}, 1.3))


def epsilon(folder):
    return read_run(folder)["metrics"]["max_error"]


def run_seed(out, seed):
    """The reference of ``seed`` and its three compressions: ``{label: (ε, seconds)}``, reference first."""
    start = time.perf_counter()
    api.train(out / "reference", seed=seed, overwrite=True, verbose=0, **REFERENCE)
    found = {"reference": (epsilon(out / "reference"), time.perf_counter() - start)}
    for label, method, settings, _ in SETTINGS:
        start, folder = time.perf_counter(), out / label.replace(" ", "").replace("%", "pc").replace("+", "-")
        api.compress(out / "reference", method, folder, overwrite=True, seed=seed, **settings)
        found[label] = (epsilon(folder), time.perf_counter() - start)
        print(f"seed {seed} {label}: ε {found[label][0]:.1f} = {found[label][0] / found['reference'][0]:.2f}× "
              f"the reference's {found['reference'][0]:.1f} ({found[label][1]:.0f} s)", flush=True)
    return found


def summary_rows(found):
    """One row per setting: each seed's ε and ratio, the median ratio and the target."""
    rows = []
    for label, _, settings, target in SETTINGS:
        ratios = {seed: f[label][0] / f["reference"][0] for seed, f in found.items()}
        median = statistics.median(ratios.values())
        row = {"setting": label, "median ratio": f"{median:.2f}×", "target": f"≤ {target}×",
               "met": "yes" if median <= target else "no"}
        for seed, f in found.items():
            row[f"seed {seed}"] = f"{f[label][0]:.0f} / {f['reference'][0]:.0f} = {ratios[seed]:.2f}×"
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="models/index-seeds")
    args = parser.parse_args(argv)
    start, found = time.perf_counter(), {}
    for seed in (int(s) for s in args.seeds.split(",")):
        found[seed] = run_seed(Path(args.out) / f"seed{seed}", seed)
    rows = summary_rows(found)
    columns = [("setting",), *[(f"seed {s}",) for s in found], ("median ratio",), ("target",), ("met",)]
    table = write_table(RESULTS / "index_seeds", rows, columns)
    minutes = (time.perf_counter() - start) / 60
    (RESULTS / "index_seeds.json").write_text(json.dumps({"found": found, "minutes": minutes}, indent=1))
    print(table + f"\n({minutes:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
