"""LC from a user's own script (``kcompress.keras.LC``) against ``compress --method lc``, same schedule.

Both start from the same reference model directory (default: models/ref, LeNet-300-100 trained 30 epochs
on the bundled MNIST sample) with the same task, μ schedule, L-step epochs, batch size, optimizer and
learning-rate decay; the runs alternate (CLI, script, CLI, script, ...) so that the load of a shared
machine falls on both, and the ratio of their median wall times is measured in this one run. Writes
``bench/results/lc_script.md`` / ``.json``.

    python bench/lc_script.py [--reference models/ref] [--task all:prune-l0:kappa=0.05] [--mu-steps 40]
                              [--l-epochs 4] [--reps 2]

The script side is what a Keras user writes: load the model, ``kk.LC(...)``, ``compile`` with the
reference's optimizer, ``fit`` a ``tf.data`` pipeline for ``lc.epochs()`` epochs, ``finalize``; once compiled
plainly, once with XLA and 100 steps per call, as the CLI's training loop runs.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kcompress import api

RESULTS = Path(__file__).parent / "results"


def cli_run(reference, args, out):
    """Seconds and test error of ``compress --method lc`` (the command's whole work, files included)."""
    start = time.perf_counter()
    result = api.compress(reference, "lc", out, overwrite=True, task=[args.task], mu_steps=args.mu_steps,
                          l_epochs=args.l_epochs)
    seconds = time.perf_counter() - start
    return seconds, result.metrics["test_error"]


def script_run(reference, args, xla=False):
    """Seconds and test error of the same schedule from a user's script; ``xla``: compiled as the CLI's loop
    runs its steps (XLA, 100 steps per call: ``compile(..., jit_compile=True, steps_per_execution=100)``)."""
    import kcompress.keras as kk
    from kcompress.backend import keras, set_seed, tf
    from kcompress.pipeline import load_reference
    from kcompress.training.loop import make_optimizer

    ref = load_reference(reference)
    set_seed(0)
    start = time.perf_counter()
    cfg = ref.train
    data = tf.data.Dataset.from_tensor_slices((ref.data.x_train, ref.data.y_train))
    data = data.shuffle(len(ref.data.x_train), seed=0).batch(int(cfg.batch_size)).prefetch(2)
    lc = kk.LC(ref.model, [args.task], mu_steps=args.mu_steps, l_epochs=args.l_epochs, lr_decay=0.99)
    fast = {"jit_compile": True, "steps_per_execution": 100} if xla else {}
    lc.model.compile(make_optimizer(cfg), keras.losses.SparseCategoricalCrossentropy(from_logits=True), **fast)
    lc.model.fit(data, epochs=lc.epochs(), callbacks=[lc.callback()], verbose=0)
    compressed, _ = lc.finalize()
    seconds = time.perf_counter() - start
    wrong = np.argmax(compressed.predict(ref.data.x_test, verbose=0, batch_size=1024), 1) != ref.data.y_test
    return seconds, 100 * float(wrong.mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, default=Path("models/ref"))
    p.add_argument("--task", default="all:prune-l0:kappa=0.05")
    p.add_argument("--mu-steps", type=int, default=40)
    p.add_argument("--l-epochs", type=int, default=4)
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args(argv)
    runs = {"cli": [], "script": [], "script-xla": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            runs["cli"].append(cli_run(args.reference, args, Path(tmp) / f"cli{rep}"))
            runs["script"].append(script_run(args.reference, args))
            runs["script-xla"].append(script_run(args.reference, args, xla=True))
            print(f"rep {rep}: " + ", ".join(f"{k} {v[-1][0]:.1f} s ({v[-1][1]:.2f} %)" for k, v in runs.items()),
                  flush=True)
    median = {k: statistics.median(s for s, _ in v) for k, v in runs.items()}
    result = {"task": args.task, "mu_steps": args.mu_steps, "l_epochs": args.l_epochs, "reps": args.reps,
              "runs": runs, "median_seconds": median, "script_over_cli": median["script"] / median["cli"],
              "script_xla_over_cli": median["script-xla"] / median["cli"]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lc_script.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# LC from a script vs compress --method lc ({args.task}, {args.mu_steps} μ steps × {args.l_epochs} "
             f"epochs, runs alternating, {args.reps} each)", "",
             "| run | seconds | test error % |", "|---|---|---|"]
    lines += [f"| {k} {i} | {s:.1f} | {e:.2f} |" for k, v in runs.items() for i, (s, e) in enumerate(v)]
    lines += ["", f"Median: CLI {median['cli']:.1f} s; the script compiled plainly takes "
                  f"**{result['script_over_cli']:.2f}×** the CLI's time, compiled as the CLI's loop runs its steps "
                  f"(`jit_compile=True, steps_per_execution=100`) **{result['script_xla_over_cli']:.2f}×** (the CLI "
                  "also scores w and Δ(Θ) on the test split after every μ step, in a thread, and writes its model "
                  "directory and plots)."]
    (RESULTS / "lc_script.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
