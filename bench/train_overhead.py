"""Overhead of `kcompress train` over plain Keras `model.fit`, measured in one run.

Both sides train the same LeNet-300-100 on the same bundled MNIST sample split, with the
same optimizer, batch size, epochs and seed. The plain side does what a plain Keras user
does: load, scale, compile, fit with validation, evaluate on test, save. The kcompress side
is `kcompress.train`, which also keeps a resumption checkpoint every epoch, scores train and
test exactly, and writes run.json and two plots. Two ratios of medians are printed:
- loop: the time inside fit (kcompress' training loop with its callbacks vs `model.fit`);
- end to end: the whole call, outputs included.
Runs alternate (plain, kcompress, plain, ...) so that machine load hits both alike.
Usage: python bench/train_overhead.py [--epochs 30] [--repeats 5]
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import kcompress
from kcompress import api
from kcompress.backend import keras, set_seed
from kcompress.core.data import load_dataset
from kcompress.core.zoo import build_model

RESULTS = Path(__file__).parent / "results"


def plain_keras(epochs, seed, out):
    """Train with nothing but Keras, as a user would without kcompress."""
    ds = load_dataset("mnist-sample", 0.1, seed)
    set_seed(seed)
    model = build_model("lenet300", ds.input_shape, 10)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(ds.x_train, ds.y_train, batch_size=64, epochs=epochs, validation_data=(ds.x_val, ds.y_val), verbose=0)
    fit_seconds = time.perf_counter() - start
    _, acc = model.evaluate(ds.x_test, ds.y_test, verbose=0)
    model.save(Path(out) / "plain.keras")
    return fit_seconds, 100 * (1 - acc)


def with_kcompress(epochs, seed, out):
    record = api.train(Path(out) / "kc", model="lenet300", data="mnist-sample", epochs=epochs, seed=seed,
                       verbose=0, overwrite=True)
    return record["train_seconds"], record["metrics"]["test_error"]


def timed(fn, *args):
    start = time.perf_counter()
    fit_seconds, error = fn(*args)
    return time.perf_counter() - start, fit_seconds, error


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    total, loop, errors = {"plain": [], "kcompress": []}, {"plain": [], "kcompress": []}, {}
    with tempfile.TemporaryDirectory() as tmp:
        timed(plain_keras, 1, args.seed, tmp)  # warm-up: imports and tracing caches for both sides
        timed(with_kcompress, 1, args.seed, tmp)
        for _ in range(args.repeats):
            for name, fn in (("plain", plain_keras), ("kcompress", with_kcompress)):
                secs, fit_secs, errors[name] = timed(fn, args.epochs, args.seed, tmp)
                total[name].append(secs)
                loop[name].append(fit_secs)
    med = lambda d, k: statistics.median(d[k])  # noqa: E731
    result = {"epochs": args.epochs, "repeats": args.repeats, "total_seconds": total, "fit_seconds": loop,
              "loop_ratio": med(loop, "kcompress") / med(loop, "plain"),
              "end_to_end_ratio": med(total, "kcompress") / med(total, "plain"),
              "test_error": errors, "version": kcompress.__version__}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    line = (f"train overhead ({args.epochs} epochs, median of {args.repeats}): training loop kcompress "
            f"{med(loop, 'kcompress'):.2f} s vs model.fit {med(loop, 'plain'):.2f} s -> ratio {result['loop_ratio']:.3f}; "
            f"end to end {med(total, 'kcompress'):.2f} s vs {med(total, 'plain'):.2f} s -> ratio "
            f"{result['end_to_end_ratio']:.3f}; test error {errors['kcompress']:.2f} % vs {errors['plain']:.2f} %")
    (RESULTS / "train_overhead.md").write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
