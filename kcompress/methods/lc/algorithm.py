"""The Learning-Compression loop (Carreira-Perpiñán 2017, arXiv:1707.01209).

Direct compression first: Θ = C-step of the reference weights w̄ (the DC baseline). Then, for
each μ of the schedule:

- L-step: ``l_epochs`` epochs of SGD on loss(w) + μ/2·‖w − Δ(Θ) − λ/μ‖², learning rate
  lr₀·decay^step — a :class:`~kcompress.training.penalty.QuadraticPenalty` whose targets Δ(Θ) + λ/μ and μ
  are assigned between steps: the penalised model and its optimizer are built and compiled
  once, so no step retraces anything and momentum carries over;
- C-step: Θ = argmin ‖w − λ/μ − Δ(Θ)‖² (+ α·cost for penalty forms), per task;
- multipliers: λ ← λ − μ(w − Δ(Θ)) (off: the quadratic-penalty method).

Each step is recorded (μ, loss, ‖w − Δ(Θ)‖, train/test error of w and of Δ(Θ)). The result
is the model with w = Δ(Θ) (:func:`compressed_model`): low-rank layers are factorised into
two layers; quantized layers hold only codebook values.
"""
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from kcompress.backend import tf
from kcompress.core.objectives import score_name, scores
from kcompress.core.progress import progress as progress_of
from kcompress.core.stats import FLOAT_BITS
from kcompress.core.surgery import clone
from kcompress.methods.base import kernel_names
from kcompress.training import loop as training
from kcompress.training.history import merge_histories
from kcompress.training.penalty import PenalizedModel, QuadraticPenalty


def kernel_variables(model, layers):
    """The kernel variables of the named ``layers``, each layer's in the order of its weights
    (a separable convolution: depthwise, then pointwise), as the tasks join and split them."""
    return [getattr(layer, n) for layer in map(model.get_layer, layers) for n in kernel_names(layer)]


class Scorer:
    """Train and test scores of w and of Δ(Θ): one traced call per chunk of a split computes the model's
    outputs with its own kernels and with ``deltas`` swapped in (and back) inside the graph; every
    kernel of the ``kernel_layers`` (depthwise and pointwise ones too) is swapped.

    It scores a copy of the model given the weights to score, so that the loop can score step k
    in a thread while step k + 1 trains: training kept 1.6 of the 2 cores busy, and scoring
    beside it (both splits, w and Δ(Θ): 132 ms) cost 50 ms per μ step instead of 132.

    On the 5k/10k MNIST sample and LeNet-300-100 (2 loaded cores, median of 5), one traced
    pass over both splits in chunks of 8192 took 0.24-0.28 s, and it ran twice per μ step with
    kernel swaps from Python; both scores this way take 0.22 s. Chunks of 2500 ran 2-3x faster
    than 5000-15000 (oneDNN), and XLA made inference slower (0.25 s for one pass at any chunk).
    """

    def __init__(self, model, data, kernel_layers=(), chunk=2500):
        spec = tf.TensorSpec([None, *data.input_shape], tf.float32)
        self.model = clone(model)
        self.variables = kernel_variables(self.model, kernel_layers)
        deltas = [tf.TensorSpec(v.shape, v.dtype) for v in self.variables]
        self.pair = tf.function(self._pair, input_signature=[spec, deltas])
        self.data = data
        self.metric = score_name(data)
        # The inputs as tensors once: converting both splits again at every μ step copied 47 MB
        # (5k + 10k MNIST images) per step.
        self.inputs = {split: [tf.constant(x[i:i + chunk], tf.float32) for i in range(0, len(x), chunk)]
                       for split, x in (("train", data.x_train), ("test", data.x_test))}

    def _pair(self, x, deltas):
        """Outputs with the current kernels, then with ``deltas`` in their place (restored after)."""
        y_w = self.model(x, training=False)
        saved = [tf.identity(v) for v in self.variables]
        for v, d in zip(self.variables, deltas):
            v.assign(d)
        with tf.control_dependencies([v.read_value() for v in self.variables]):
            y_delta = self.model(x, training=False)
        with tf.control_dependencies([y_delta]):
            for v, w in zip(self.variables, saved):
                v.assign(w)
        return y_w, y_delta

    def _score(self, split, y, pred, suffix):
        return {f"{split}_{self.metric}{suffix}": scores(y, pred, self.data, "")[self.metric]}

    def both(self, weights, deltas):
        """Scores of the model with ``weights`` (all of them, suffix ``_w``) and with its task kernels
        replaced by ``deltas`` (``_delta``; one array per kernel)."""
        self.model.set_weights(weights)
        d, out = self.data, {}
        deltas = [tf.constant(a, tf.float32) for a in deltas]
        for split, y in (("train", d.y_train), ("test", d.y_test)):
            pairs = [self.pair(c, deltas) for c in self.inputs[split]]
            out.update(self._score(split, y, np.concatenate([p[0].numpy() for p in pairs]), "_w"))
            out.update(self._score(split, y, np.concatenate([p[1].numpy() for p in pairs]), "_delta"))
        return out


class LC:
    """One LC run of ``tasks`` (see :mod:`kcompress.methods.lc.tasks`) on ``model`` (changed in place).

    :meth:`run` is the whole loop on a kcompress Dataset. The same steps serve a loop that a Keras
    user's own ``fit`` drives (:mod:`kcompress.keras`): with ``data=None`` there is no scoring and
    ``trainee`` (the model with the penalty) is left for the caller to compile; with ``cfg=None`` the
    optimizer's learning rate is the caller's (``lr0``, when set, is decayed per μ step as in :meth:`run`).
    The steps, in order: :meth:`begin` (λ = 0, the DC step), then per μ step :meth:`set_penalty`,
    ``l_epochs`` epochs of training ``trainee``, :meth:`end_step` (C-step, λ update); finally
    :meth:`set_kernels` with ``deltas``.
    """

    def __init__(self, model, data, tasks, cfg, schedule):
        self.model, self.data, self.tasks, self.cfg = model, data, tasks, cfg
        self.schedule = schedule.validate()
        self.kernels = [kernel_variables(model, t.layers) for t in tasks]
        self.variables = [v for group in self.kernels for v in group]
        self.scorer = None if data is None else Scorer(model, data, [n for t in tasks for n in t.layers])
        self.execution = None
        self.penalty = QuadraticPenalty(self.variables, name="lc_penalty")
        self.trainee = PenalizedModel(model, [self.penalty])
        if data is not None:
            training.compile_model(self.trainee, data, cfg)
        self.lr0 = None if cfg is None else float(cfg.lr)
        self.deltas = self.lambdas = None
        self.history, self.steps, self.dc = {}, [], {}

    # -- the three steps -------------------------------------------------------------------
    def weights(self):
        """The current w of every task, as the task's vector/matrix."""
        return [t.join([v.numpy() for v in group]) for t, group in zip(self.tasks, self.kernels)]

    def c_step(self, mu):
        """Θ = C-step of w − λ/μ for every task; returns the time it took."""
        start = time.perf_counter()
        self.deltas = [t.compression.compress(w - lam / mu, mu)
                       for t, w, lam in zip(self.tasks, self.weights(), self.lambdas)]
        return time.perf_counter() - start

    def set_penalty(self, step, mu):
        """Point the penalty at μ/2‖w − Δ(Θ) − λ/μ‖² and the optimizer at lr₀·decay^step
        (variable assignments only: nothing is rebuilt or retraced)."""
        self.penalty.set_mu(mu)
        targets = [d + lam / mu for d, lam in zip(self.deltas, self.lambdas)]
        self.penalty.set_targets([a for t, x in zip(self.tasks, targets) for a in t.split(x)])
        if self.lr0 is not None:
            self.trainee.optimizer.learning_rate.assign(self.lr0 * float(self.schedule.lr_decay) ** step)

    def l_step(self, step, mu):
        """``l_epochs`` epochs on loss + μ/2‖w − Δ(Θ) − λ/μ‖²; returns the last epoch's logs."""
        self.set_penalty(step, mu)
        epochs = int(self.schedule.l_epochs)
        history = training.fit(self.trainee, self.data, replace(self.cfg, epochs=epochs), compile=False,
                               initial_epoch=step * epochs, planned_epochs=epochs * len(self.schedule.mus))
        self.history = merge_histories(self.history, history)
        self.execution = history.execution
        return {k: v[-1] for k, v in history.items()}

    def update_multipliers(self, mu):
        """λ ← λ − μ(w − Δ(Θ)) (unless the schedule runs the quadratic-penalty method)."""
        if self.schedule.multipliers:
            self.lambdas = [lam - mu * (w - d) for lam, w, d in zip(self.lambdas, self.weights(), self.deltas)]

    def begin(self):
        """λ = 0 and the direct-compression (DC) step: Θ = C-step of the current (reference) w at the first μ;
        returns the time it took."""
        self.lambdas = [np.zeros_like(w) for w in self.weights()]
        return self.c_step(self.schedule.mus[0])

    def end_step(self, mu):
        """After an L-step at ``mu``: the C-step, then the multipliers; returns ``(C-step seconds, ‖w − Δ(Θ)‖)``
        (the distance measured before λ moves)."""
        c_seconds = self.c_step(mu)
        distance = self.distance()
        self.update_multipliers(mu)
        return c_seconds, distance

    # -- measuring ---------------------------------------------------------------------------
    def distance(self):
        """‖w − Δ(Θ)‖ over all tasks."""
        return float(np.sqrt(sum(np.sum((w - d) ** 2) for w, d in zip(self.weights(), self.deltas))))

    def set_kernels(self, arrays_per_task):
        """Assign one task-shaped array per task to the tasks' kernels."""
        for t, group, x in zip(self.tasks, self.kernels, arrays_per_task):
            for v, a in zip(group, t.split(x)):
                v.assign(a.astype(np.float32))

    def scores(self, pool=None):
        """Scores of the current w and Δ(Θ); with a thread ``pool``, a future of them."""
        args = (self.model.get_weights(), [a for t, x in zip(self.tasks, self.deltas) for a in t.split(x)])
        return pool.submit(self.scorer.both, *args) if pool else self.scorer.both(*args)

    # -- the loop ----------------------------------------------------------------------------
    def run(self, progress=True):
        """DC baseline, then L/C/multiplier steps over the μ schedule; leaves w = Δ(Θ)."""
        mus = self.schedule.mus
        self.begin()
        self.dc = {"distance": self.distance(), **{k.replace("_delta", ""): v for k, v in self.scores().items()
                                                   if k.endswith("_delta")}}
        bar = progress_of(enumerate(mus), "LC", "μ-step", total=len(mus), enabled=progress, line_per="postfix")
        with ThreadPoolExecutor(1) as pool:
            scoring = None
            for step, mu in bar:
                start = time.perf_counter()
                logs = self.l_step(step, mu)
                l_seconds = time.perf_counter() - start
                c_seconds, distance = self.end_step(mu)
                self.steps.append({"step": step, "mu": mu, "lr": float(self.trainee.optimizer.learning_rate.numpy()),
                                   "loss": logs.get("loss"), "penalty": logs.get(self.penalty.name),
                                   "distance": distance, "l_seconds": l_seconds, "c_seconds": c_seconds})
                self._add_scores(scoring, bar)  # the previous step's, scored while this one trained
                scoring = (self.steps[-1], self.scores(pool))
            self._add_scores(scoring, bar)
        self.set_kernels(self.deltas)
        return self

    def _add_scores(self, scoring, bar):
        """Wait for a ``(step record, future scores)`` pair and put the scores into the record."""
        if scoring is None:
            return
        record, future = scoring
        record.update(future.result())
        m = self.scorer.metric
        bar.set_postfix(step=f"{record['step'] + 1}/{len(self.schedule.mus)}", mu=f"{record['mu']:.2e}", **{f"{m}_w": f"{record[f'test_{m}_w']:.2f}",
                                                    f"{m}_Δ": f"{record[f'test_{m}_delta']:.2f}"},
                        dist=f"{record['distance']:.3g}")

    def storage(self):
        """Bits of the compressed model as LC stores it: each task's Θ plus every other
        weight at 32 bits; and the reference's bits (all weights at 32 bits)."""
        task_sizes = sum(int(np.prod(s)) for t in self.tasks for s in t.shapes)
        total = sum(int(np.prod(v.shape)) for v in self.model.weights)
        bits = sum(t.compression.storage()["bits"] for t in self.tasks) + (total - task_sizes) * FLOAT_BITS
        return {"bits": int(bits), "reference_bits": total * FLOAT_BITS, "bits_ratio": total * FLOAT_BITS / bits}

    def record(self):
        """What run.json keeps of this run."""
        tasks = [{"task": t.describe(), **t.compression.storage()} for t in self.tasks]
        s = self.schedule
        return {"tasks": tasks, "schedule": {"mus": list(s.mus), "l_epochs": s.l_epochs, "lr0": self.lr0,
                                             "lr_decay": s.lr_decay, "multipliers": s.multipliers},
                "metric": self.scorer and self.scorer.metric, "execution": self.execution, "dc": self.dc, "steps": self.steps,
                "storage": self.storage()}
