"""Per-epoch training cost: kcompress's shared loop vs a plain PyTorch loop vs plain Keras fit.

Same model (LeNet-300-100, ReLU, 784-300-100-10), same data (the bundled 5k MNIST sample,
no validation split), SGD with Nesterov momentum 0.9 at lr 0.05, batch 64 and 256. Each
contender trains ``--epochs`` epochs per round; rounds alternate between contenders
(torch, keras, kcompress, torch, ...) so that machine load hits all alike; the first epoch
of each contender's first round (tracing, XLA compilation) is left out. Per-epoch time is
the median over the remaining epochs; ratios are kcompress / torch and kcompress / keras.
Many short rounds (16 of 2 epochs) keep a slow spell of the shared machine from landing on one
contender: with 4 rounds of 4 epochs, three runs within an hour gave kcompress/torch 0.88-1.00 at
batch 64 and 0.73-1.07 at batch 256.
torch runs in a worker process that never loads TensorFlow (torch and TensorFlow training
in one process crashed with a segmentation fault) and flushes denormals to zero as TensorFlow
does. It runs with 1 and with 2 threads and the faster is the reference: on the shared,
loaded 2-core machine 2 threads took 1.2-3.0 s per epoch (thread contention), 1 thread 0.15-0.45 s.

    pip install -e .[bench]   # torch, for this script only
    python bench/epoch_cost.py [--rounds 16 --epochs 2 --batches 64,256 --threads 1,2]

Writes bench/results/epoch_cost.json and .md.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
LR, MOMENTUM = 0.05, 0.9


def torch_worker(batch, seed, threads):
    """Serve ``epochs N`` requests on stdin: train N epochs, answer the seconds of each as JSON;
    ``test`` answers the test error."""
    import torch

    from kcompress.core.data import load_dataset

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as TensorFlow does; without it epochs ran ~10x slower here
    torch.manual_seed(seed)
    ds = load_dataset("mnist-sample", 0.0, seed)
    x, y = torch.from_numpy(ds.x_train.reshape(len(ds.x_train), -1)), torch.from_numpy(ds.y_train.astype(np.int64))
    net = torch.nn.Sequential(torch.nn.Linear(784, 300), torch.nn.ReLU(), torch.nn.Linear(300, 100),
                              torch.nn.ReLU(), torch.nn.Linear(100, 10))
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True)
    loss = torch.nn.CrossEntropyLoss()
    for line in sys.stdin:
        if line.startswith("test"):
            with torch.no_grad():
                pred = net(torch.from_numpy(ds.x_test.reshape(len(ds.x_test), -1))).argmax(1).numpy()
            print(json.dumps(100 * float(np.mean(pred != ds.y_test))), flush=True)
            continue
        seconds = []
        for _ in range(int(line.split()[1])):
            start = time.perf_counter()
            perm = torch.randperm(len(x))
            for i in range(0, len(x), batch):
                idx = perm[i:i + batch]
                opt.zero_grad()
                loss(net(x[idx]), y[idx]).backward()
                opt.step()
            seconds.append(time.perf_counter() - start)
        print(json.dumps(seconds), flush=True)


class TorchSide:
    """The plain PyTorch loop, in its worker process."""

    def __init__(self, batch, seed, threads):
        self.proc = subprocess.Popen([sys.executable, __file__, "--torch-worker", str(batch), "--seed", str(seed),
                                      "--threads", str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def _ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def epochs(self, n):
        return self._ask(f"epochs {n}")

    def test_error(self, ds):
        error = self._ask("test")
        self.proc.stdin.close()
        self.proc.wait()
        return error


def keras_sides():
    """Plain Keras fit and kcompress's fit (imported here: the torch worker never loads TF)."""
    from kcompress.training import loop as training
    from kcompress.training.config import TrainConfig
    from kcompress.backend import keras, set_seed
    from kcompress.core.zoo import build_model

    class EpochTimer(keras.callbacks.Callback):
        """Wall time of every epoch (epoch hooks only: no per-batch work)."""

        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

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
        """:func:`kcompress.training.loop.fit` (what ``kcompress train`` runs) on its automatic path."""

        def __init__(self, ds, batch, seed):
            set_seed(seed)
            self.ds, self.batch, self.done, self.execution = ds, batch, 0, None
            self.model = build_model("lenet300", ds.input_shape, 10)
            self.cfg = TrainConfig(batch_size=batch, lr=LR, momentum=MOMENTUM, verbose=0)
            training.compile_model(self.model, ds, self.cfg)

        def epochs(self, n):
            timer = EpochTimer()
            cfg = TrainConfig.from_dict({**self.cfg.to_dict(), "epochs": n})
            history = training.fit(self.model, self.ds, cfg, callbacks=[timer], compile=False, initial_epoch=self.done)
            self.done += n
            self.execution = history.execution
            return timer.seconds

    return KerasSide, KcompressSide


def measure(ds, batch, args):
    keras_side, kcompress_side = keras_sides()
    sides = {f"torch_{t}thread": TorchSide(batch, args.seed, int(t)) for t in args.threads.split(",")}
    sides.update(keras_fit=keras_side(ds, batch, args.seed), kcompress=kcompress_side(ds, batch, args.seed))
    times = {name: [] for name in sides}
    for r in range(args.rounds):
        for name, side in sides.items():
            seconds = side.epochs(args.epochs)
            times[name] += seconds[1:] if r == 0 else seconds
    row = {name: 1000 * statistics.median(t) for name, t in times.items()}
    row["torch"] = min(v for k, v in row.items() if k.startswith("torch_"))
    row.update(kcompress_over_torch=row["kcompress"] / row["torch"], kcompress_over_keras=row["kcompress"] / row["keras_fit"],
               epochs_timed=len(times["kcompress"]), execution=sides["kcompress"].execution,
               test_error={name: side.test_error(ds) for name, side in sides.items()})
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batches", default="64,256")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", default="1,2", help="torch thread counts to run (the fastest is the reference)")
    p.add_argument("--torch-worker", type=int, metavar="BATCH", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.torch_worker:
        return torch_worker(args.torch_worker, args.seed, int(args.threads))
    from kcompress.core.data import load_dataset

    ds = load_dataset("mnist-sample", 0.0, args.seed)
    rows = {}
    for batch in (int(b) for b in args.batches.split(",")):
        rows[batch] = measure(ds, batch, args)
        print(batch, json.dumps(rows[batch]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "epoch_cost.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    lines = ["| batch | torch ms (best of threads) | keras fit ms | kcompress ms | kcompress/torch | kcompress/keras | kcompress path |",
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
