"""Pruner masks: a trainable gate per unit/channel and the losses that close all but n of them.

A :class:`Gate` multiplies each unit (Dense) or channel (Conv2D, last axis) of its input by
σ(wᵢ), one trainable weight per unit, starting at σ ≈ 1 (open). :class:`PrunerPenalty` is the
extra loss term (see :mod:`kcompress.training.penalty`) ``μ·λ·Σ_layers L_pru`` with

- ``L_sel = |Σσ(wᵢ) − n| / N``: keep n of the layer's N units open;
- ``L_rej = Σσ(wᵢ)(1 − σ(wᵢ)) / N``: push every gate to 0 or 1;
- the ``product`` rejection variant (note 003) adds ``N·Πσ(wᵢ) / N = Πσ(wᵢ)`` to L_rej (it repels the all-open state);

λ and μ live in tf.Variables so that a schedule (:mod:`kcompress.methods.pruner.schedule`) moves them
between epochs without recompiling. :func:`add_gates` inserts gates into a model,
:func:`harden` turns them into exact 0/1 masks, :func:`gates_open` opens them all for a while (the
gated model is then the model as given); :class:`GateTrainer` trains a gated model with
the network weights by gradient and the gate weights either by gradient at their own learning
rate or by a Markov chain (w ← w + δ·U[−1, 1], kept only if L_tot falls on the batch).
"""
from contextlib import contextmanager

import numpy as np

from kcompress.backend import keras, tf
from kcompress.core.channels import Channels
from kcompress.core.surgery import Graph, apply, copy_layer, outputs_of, rebuild, tensor_key
from kcompress.errors import require
from kcompress.methods.pruner.settings import REJECTIONS
from kcompress.training.penalty import PenalizedModel, PenaltyTerm

GATE_INIT = 4.0  # σ(4) ≈ 0.982: gates start open
GATE_OPEN = 30.0  # σ(30) rounds to exactly 1 in float32: an open gate passes its unit unchanged
# Layers that act on each unit/channel separately: a gate goes after them, not before
# (a gate before batch-norm would be normalised away; a depthwise conv's bias would reopen it).
PER_UNIT_LAYERS = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Dropout",
                   "DepthwiseConv2D")


@keras.saving.register_keras_serializable(package="kcompress")
class Gate(keras.layers.Layer):
    """Multiplies the last axis of its input by σ(w) (soft) or by [σ(w) > ½] (``hard``)."""

    def __init__(self, init=GATE_INIT, hard=False, **kwargs):
        super().__init__(**kwargs)
        self.init = float(init)
        self.hard = bool(hard)

    def build(self, input_shape):
        self.w = self.add_weight("w", shape=(int(input_shape[-1]),),
                                 initializer=keras.initializers.Constant(self.init), trainable=True)
        super().build(input_shape)

    def values(self):
        """The gate values σ(w) (a tensor of shape (units,))."""
        return tf.sigmoid(self.w)

    def call(self, x):
        g = tf.cast(self.w > 0.0, x.dtype) if self.hard else tf.cast(self.values(), x.dtype)
        return x * g

    def get_config(self):
        return {**super().get_config(), "init": self.init, "hard": self.hard}


def gate_name(layer_name):
    return f"{layer_name}_gate"


def gate_position(model, layer_name, graph=None):
    """The name of the layer after which ``layer_name``'s gate goes: the layer itself, or the
    last of the per-unit layers (batch-norm, activation) that follow it, each the only reader of
    the one before (where the output branches, every branch must see the gated channels)."""
    graph = graph or Graph(model)
    node = graph.node(layer_name)
    while True:
        key = tensor_key(outputs_of(node)[0])
        readers = graph.consumers.get(key, [])
        if key in graph.outputs or len(readers) != 1 or not _per_unit(readers[0].layer) \
                or graph.calls[readers[0].layer.name] != 1:
            return node.layer.name
        node = readers[0]


def _per_unit(layer):
    """Whether ``layer`` acts on each unit alone (a depthwise conv: with depth multiplier 1)."""
    return type(layer).__name__ in PER_UNIT_LAYERS and getattr(layer, "depth_multiplier", 1) == 1


def add_gates(model, layer_names, init=GATE_INIT):
    """A copy of ``model`` (same weights) with one :class:`Gate` per named layer's channel group
    (:mod:`kcompress.core.channels`), the same gate after every member of the group (after its
    batch-norm/activation, see :func:`gate_position`), so the group's channels are gated alike.
    A closed gate then equals removing its channels wherever the layers between the gates and the
    readers keep 0 at 0 (ReLU, pooling, Add; not a batch-norm after an Add, whose shift the
    fine-tuning after the removal absorbs). Returns (model, gates by the names given)."""
    channels = Channels(model)
    gates, at = {}, {}
    for name in layer_names:
        group = channels.group_of(name)
        require(group.name not in gates, f"{name} and {gates.get(group.name, (None, name))[1]} share their channels "
                                         "(one group): gate only one of them")
        gates[group.name] = (Gate(init=init, name=gate_name(name)), name)
        at.update({gate_position(model, m, channels.graph): gates[group.name][0] for m in group.members})

    def gated(layer, x):
        return at[layer.name](apply(copy_layer(layer), x))

    new = rebuild(model, replace={pos: gated for pos in at})
    return new, {name: gate for gate, name in gates.values()}


def spread_gates(gates, spread):
    """Add U[−spread, spread] to every gate weight (TensorFlow's seeded generator): with all gates
    equal, L_pru alone moves them in lockstep and cannot pick n of N."""
    for gate in gates.values():
        gate.w.assign_add(tf.random.uniform(tf.shape(gate.w), -float(spread), float(spread)))


@contextmanager
def gates_open(gates):
    """Within the block every gate of ``gates`` (``{layer: Gate}``) is σ = 1 exactly, so the gated model
    computes the model as given (the Keras piece measures its task loss so); their weights come back after."""
    saved = [g.w.numpy() for g in gates.values()]
    try:
        for gate in gates.values():
            gate.w.assign(tf.fill(tf.shape(gate.w), GATE_OPEN))
        yield
    finally:
        for gate, w in zip(gates.values(), saved):
            gate.w.assign(w)


def harden(gated_model):
    """A copy of ``gated_model`` whose gates are exact masks: open (σ > ½) = 1, closed = 0."""
    copies = {}  # one hard gate per gate, however many layers it follows

    def hard(layer, x):
        if layer.name not in copies:
            copies[layer.name] = copy_layer(layer, weights=layer.get_weights(), hard=True)
        return apply(copies[layer.name], x)

    return rebuild(gated_model, replace={l.name: hard for l in gated_model.layers if isinstance(l, Gate)})


def strip_gates(gated_model):
    """A copy of ``gated_model`` with the gate layers left out (every gate treated as 1)."""
    gates = [l.name for l in gated_model.layers if isinstance(l, Gate)]
    return rebuild(gated_model, replace={name: (lambda layer, x: x) for name in gates})


def selection_loss(s, n):
    """``L_sel = |Σ s − n| / N`` for gate values ``s`` (N of them)."""
    return tf.abs(tf.reduce_sum(s) - float(n)) / float(s.shape[0])


def rejection_loss(s, w=None, rejection="sum"):
    """``L_rej = Σ s(1 − s)/N``; ``product``: note 003's ``[Σ s(1 − s) + N·Π s]/N``, Π s as exp(−Σ softplus(−w))."""
    loss = tf.reduce_sum(s * (1.0 - s)) / float(s.shape[0])
    if rejection == "product":
        loss += tf.exp(-tf.reduce_sum(tf.nn.softplus(-w)))
    return loss


class PrunerPenalty(PenaltyTerm):
    """``c·μ·λ·Σ_layers (L_sel + L_rej)`` over gates ``{layer: Gate}`` with targets ``{layer: n}``; c is 1 unless
    tied to the network's size (``--size-coefficient``, set by the schedule's callback)."""

    name = "pruner_penalty"

    def __init__(self, gates, targets, rejection="sum", lam=1.0, mu=1.0):
        require(rejection in REJECTIONS, f"unknown --rejection {rejection!r} (one of {', '.join(REJECTIONS)})")
        self.gates = dict(gates)
        self.targets = {name: int(targets[name]) for name in self.gates}
        self.rejection = rejection
        self.lam = tf.Variable(float(lam), trainable=False, dtype=tf.float32, name="pruner_lambda")
        self.mu = tf.Variable(float(mu), trainable=False, dtype=tf.float32, name="pruner_mu")
        self.coefficient = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="pruner_size_coefficient")

    def units(self):
        """The number of gated units (Σ N over the gated layers): the network's size the coefficient follows."""
        return sum(int(g.w.shape[0]) for g in self.gates.values())

    @property
    def variables(self):
        """The gate weights, one vector per gated layer."""
        return [g.w for g in self.gates.values()]

    def parts(self):
        """``(L_sel, L_rej)`` summed over the gated layers (scalar tensors)."""
        sel, rej = [], []
        for name, gate in self.gates.items():
            s = gate.values()
            sel.append(selection_loss(s, self.targets[name]))
            rej.append(rejection_loss(s, gate.w, self.rejection))
        return tf.add_n(sel), tf.add_n(rej)

    def pruning_loss(self):
        """``L_pru = L_sel + L_rej`` (without μ·λ)."""
        return tf.add_n(list(self.parts()))

    def __call__(self):
        return self.coefficient * self.mu * self.lam * self.pruning_loss()


class GateTrainer(PenalizedModel):
    """Trains a gated model on L_tot = L_task + μ·λ·L_pru.

    Network weights follow the compiled optimizer. Gate weights follow ``gate_optimizer``
    (``mode="gradient"``) or a Markov chain (``mode="markov"``): after the network step, all
    gates get w + δ·U[−1, 1] and keep it only if L_tot on the same batch falls.
    ``pruning_only``: L_tot = μ·λ·L_pru alone; only the gates move (the network weights, batch-norm
    statistics included, stay as they are) and the task loss is still logged as ``loss``.
    """

    def __init__(self, inner, penalty, mode="gradient", gate_optimizer=None, delta=0.1, pruning_only=False,
                 **kwargs):
        super().__init__(inner, [penalty], **kwargs)
        require(mode in ("gradient", "markov"), f"unknown --pruner-optimizer {mode!r} (one of gradient, markov)")
        require(mode == "markov" or gate_optimizer is not None, "gradient gate training needs a gate optimizer")
        self.penalty = penalty
        self.mode = mode
        self.gate_optimizer = gate_optimizer
        self.delta = float(delta)
        self.pruning_only = bool(pruning_only)
        self.accept_trackers = [keras.metrics.Mean(name="markov_accept")] if mode == "markov" else []

    @property
    def metrics(self):
        return super().metrics + self.accept_trackers

    def _split(self, variables):
        gate_refs = {v.ref() for v in self.penalty.variables}
        gates = [v for v in variables if v.ref() in gate_refs]
        rest = [v for v in variables if v.ref() not in gate_refs]
        return gates, rest

    def total_loss(self, x, y, sample_weight=None):
        """L_tot on a batch with the current weights (no metric side effects)."""
        if self.pruning_only:
            return self.penalty()
        return self.loss(y, self(x, training=False), sample_weight) + self.penalty()

    def markov_gate_step(self, x, y, sample_weight=None):
        """One Markov proposal for all gates; returns (L_tot before, L_tot after) — after ≤ before."""
        gates = self.penalty.variables
        before = self.total_loss(x, y, sample_weight)
        saved = [tf.identity(v) for v in gates]
        for v in gates:
            v.assign_add(self.delta * tf.random.uniform(tf.shape(v), -1.0, 1.0))
        proposed = self.total_loss(x, y, sample_weight)
        accept = proposed < before
        for v, old in zip(gates, saved):
            v.assign(tf.where(accept, v, old))
        self.accept_trackers[0].update_state(tf.cast(accept, tf.float32))
        return before, tf.where(accept, proposed, before)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        gates, rest = self._split(self.trainable_variables)
        # Under a tf.distribute strategy the compiled loss is each replica's share (÷ replicas) and the
        # optimizers sum the replicas' gradients: the penalty takes its share too, or it would count twice.
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        with tf.GradientTape() as tape:
            y_pred = self(x, training=not self.pruning_only)
            task_loss = self.compiled_loss(y, y_pred, sample_weight, regularization_losses=self.losses)
            extra = self.penalty()
            total = extra if self.pruning_only else task_loss * replicas + extra  # L_tot of the whole batch
            share = total / replicas
        grads = tape.gradient(share, gates if self.pruning_only else gates + rest)
        if not self.pruning_only:
            self.optimizer.apply_gradients(zip(grads[len(gates):], rest))
        if self.mode == "gradient":
            self.gate_optimizer.apply_gradients(zip(grads[:len(gates)], gates))
        else:
            self.markov_gate_step(x, y, sample_weight)
        self.compiled_metrics.update_state(y, y_pred, sample_weight)
        self.term_trackers[0].update_state(extra)
        self.total_tracker.update_state(total)
        return {m.name: m.result() for m in self.metrics}


def gate_summary(penalty, epsilon):
    """Numpy facts about the gates now: values per layer, open counts, whether all are within ε
    of 0 or 1 with exactly n open in every layer (= converged)."""
    values = {name: g.values().numpy() for name, g in penalty.gates.items()}
    open_counts = {name: int((v > 0.5).sum()) for name, v in values.items()}
    decided = all(np.all((v < epsilon) | (v > 1.0 - epsilon)) for v in values.values())
    on_target = all(open_counts[name] == penalty.targets[name] for name in values)
    return {"values": values, "open": open_counts, "converged": bool(decided and on_target)}


def kept_units(penalty):
    """``{layer: sorted indices}`` of the n units with the largest gate values per layer."""
    out = {}
    for name, gate in penalty.gates.items():
        order = np.argsort(-gate.values().numpy(), kind="stable")
        out[name] = sorted(int(i) for i in order[: penalty.targets[name]])
    return out
