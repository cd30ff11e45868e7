"""Per-epoch training cost: kcompress's shared loop vs a plain PyTorch loop vs plain Keras fit.

Same model (LeNet-300-100, ReLU, 784-300-100-10), same data (the bundled 5k MNIST sample,
no validation split), SGD with Nesterov momentum 0.9 at lr 0.05, batch 64 and 256. Each
contender trains ``--epochs`` epochs per round; rounds alternate between contenders
(torch, keras, kcompress, torch, ...) so that machine load hits all alike; the first epoch
of each contender's first round (tracing, XLA compilation) is left out. Per-epoch time is
the median over the remaining epochs; ratios are kcompress / torch and kcompress / keras.

    pip install -e .[bench]   # torch, for this script only
    python bench/epoch_cost.py [--rounds 4 --epochs 4 --batches 64,256]

Writes bench/results/epoch_cost.json and .md.
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from kcompress import training
from kcompress.backend import keras, set_seed
from kcompress.data import load_dataset
from kcompress.zoo import build_model

RESULTS = Path(__file__).parent / "results"
LR, MOMENTUM = 0.05, 0.9


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch (epoch hooks only: no per-batch work)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


class TorchSide:
    def __init__(self, ds, batch, seed):
        torch.manual_seed(seed)
        self.x, self.y = torch.from_numpy(ds.x_train.reshape(len(ds.x_train), -1)), torch.from_numpy(ds.y_train.astype(np.int64))
        self.net = torch.nn.Sequential(torch.nn.Linear(784, 300), torch.nn.ReLU(), torch.nn.Linear(300, 100),
                                       torch.nn.ReLU(), torch.nn.Linear(100, 10))
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True)
        self.loss = torch.nn.CrossEntropyLoss()
        self.batch = batch

    def epochs(self, n):
        seconds = []
        for _ in range(n):
            start = time.perf_counter()
            perm = torch.randperm(len(self.x))
            for i in range(0, len(self.x), self.batch):
                idx = perm[i:i + self.batch]
                self.opt.zero_grad()
                self.loss(self.net(self.x[idx]), self.y[idx]).backward()
                self.opt.step()
            seconds.append(time.perf_counter() - start)
        return seconds

    def test_error(self, ds):
        with torch.no_grad():
            pred = self.net(torch.from_numpy(ds.x_test.reshape(len(ds.x_test), -1))).argmax(1).numpy()
        return 100 * float(np.mean(pred != ds.y_test))


class KerasSide:
    """Plain ``model.fit`` as a Keras user writes it (default compile: 1 step per call, no XLA)."""

    def __init__(self, ds, batch, seed):
        set_seed(seed)
        self.ds, self.batch = ds, batch
        self.model = build_model("lenet300", ds.input_shape, 10)
        self.model.compile(keras.optimizers.SGD(LR, momentum=MOMENTUM, nesterov=True),
                           keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    def epochs(self, n):
        timer = EpochTimer()
        self.model.fit(self.ds.x_train, self.ds.y_train, batch_size=self.batch, epochs=n, verbose=0, callbacks=[timer])
        return timer.seconds

    def test_error(self, ds):
        return 100 * (1 - self.model.evaluate(ds.x_test, ds.y_test, verbose=0)[1])


class KcompressSide(KerasSide):
    """:func:`kcompress.training.fit` (what ``kcompress train`` runs), its automatic path."""

    def __init__(self, ds, batch, seed):
        set_seed(seed)
        self.ds, self.batch, self.done = ds, batch, 0
        self.model = build_model("lenet300", ds.input_shape, 10)
        self.cfg = training.TrainConfig(batch_size=batch, lr=LR, momentum=MOMENTUM, verbose=0)
        training.compile_model(self.model, ds, self.cfg)
        self.execution = None

    def epochs(self, n):
        timer = EpochTimer()
        cfg = training.TrainConfig.from_dict({**self.cfg.to_dict(), "epochs": n})
        history = training.fit(self.model, self.ds, cfg, callbacks=[timer], compile=False, initial_epoch=self.done)
        self.done += n
        self.execution = history.execution
        return timer.seconds


def measure(ds, batch, rounds, epochs, seed):
    sides = {"torch": TorchSide(ds, batch, seed), "keras_fit": KerasSide(ds, batch, seed),
             "kcompress": KcompressSide(ds, batch, seed)}
    times = {name: [] for name in sides}
    for r in range(rounds):
        for name, side in sides.items():
            seconds = side.epochs(epochs)
            times[name] += seconds[1:] if r == 0 else seconds
    row = {name: 1000 * statistics.median(t) for name, t in times.items()}
    row.update(kcompress_over_torch=row["kcompress"] / row["torch"], kcompress_over_keras=row["kcompress"] / row["keras_fit"],
               epochs_timed=len(times["torch"]), execution=sides["kcompress"].execution,
               test_error={name: side.test_error(ds) for name, side in sides.items()})
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batches", default="64,256")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (TensorFlow uses every core)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset("mnist-sample", 0.0, args.seed)
    rows = {}
    for batch in (int(b) for b in args.batches.split(",")):
        rows[batch] = measure(ds, batch, args.rounds, args.epochs, args.seed)
        print(batch, json.dumps(rows[batch]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "epoch_cost.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    lines = ["| batch | torch ms | keras fit ms | kcompress ms | kcompress/torch | kcompress/keras | path |",
             "|---|---|---|---|---|---|---|"]
    for b, r in rows.items():
        e = r["execution"]
        lines.append(f"| {b} | {r['torch']:.0f} | {r['keras_fit']:.0f} | {r['kcompress']:.0f} | "
                     f"{r['kcompress_over_torch']:.2f} | {r['kcompress_over_keras']:.2f} | "
                     f"{e['steps_per_execution']} steps/call, XLA {e['jit_compile']} |")
    (RESULTS / "epoch_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
