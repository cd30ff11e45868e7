"""Method "pruner": pruner masks — differentiable node pruning, then real unit removal.

Gates σ(wᵢ) go after the chosen layers, one gate per channel group shared by every layer of the
group (:mod:`kcompress.core.channels`; default: every prunable group); the
gated model trains on L_task + μ·λ·(L_sel + L_rej) (see :mod:`kcompress.methods.pruner.gates`;
or on the pruning loss alone with ``--pruning-loss-only``), the network learning rate following
``--gate-lr-schedule``, with the λ/μ schedule of :mod:`kcompress.methods.pruner.schedule` until
every gate is within ε of 0 or 1 with exactly n open per layer (or ``--max-epochs``). Then the n
units with the largest gates per layer are kept, the others removed for real (:mod:`kcompress.methods.pruner.units`), and
the smaller plain model is fine-tuned briefly. The gate phase is one :class:`GatePhase`, the same that
:class:`kcompress.keras.pruner.Pruner` builds in a user's own training script.
"""
import time

import numpy as np

from kcompress.backend import keras
from kcompress.core.channels import Channels
from kcompress.core.objectives import get_loss
from kcompress.errors import require
from kcompress.methods.base import CompressionResult, finetune_config, target_layers, unset_values
from kcompress.methods.pruner import gates as G
from kcompress.methods.pruner.schedule import DropOnPruning, LambdaMuSchedule, PrunerCallback
from kcompress.methods.pruner.units import remove_units
from kcompress.reporting.plots import plt, save_figure
from kcompress.training.history import merge_histories
from kcompress.training.loop import fit


def gate_targets(model, settings, channels=None):
    """``{group: n}``: channels to keep per gated channel group (:mod:`kcompress.core.channels`,
    named after its first layer), from --keep (a share of the group's width) / --keep-units /
    --layers, where a layer named stands for its whole group."""
    channels = channels or Channels(model)
    exact = dict(settings.keep_units or ())
    names = settings.layers or list(exact)
    if names:
        names = [l.name for l in target_layers(model, names)]
        groups = [channels.group_of(name) for name in names]
    else:
        groups = hidden_layers(model, channels)
        names = [g.name for g in groups]
    stray = [n for n in exact if n not in names]
    require(not stray, f"--keep-units: {', '.join(stray)} not among the gated layers ({', '.join(names)})")
    targets, named = {}, {}
    for name, group in zip(names, groups):
        require(group.prunable, f"cannot prune {name}: {group.reason}")
        n = exact.get(name, max(1, int(round(settings.keep * group.width))))
        require(1 <= n <= group.width, f"--keep-units: {name}={n} must be in 1..{group.width}")
        require(targets.get(group.name, n) == n,
                f"--keep-units: {name} and {named.get(group.name)} share their channels (one group); give one count")
        targets[group.name], named[group.name] = n, name
    return targets


def hidden_layers(model, channels=None):
    """Every prunable channel group; the others are skipped with a one-line notice (silently for
    the output layers, whose units cannot go), and a usage error names them when none is left."""
    channels = channels or Channels(model)
    outputs = {t._keras_history.layer.name for t in model.outputs}
    skipped = [g for g in channels.groups if not g.prunable and not set(g.members) <= outputs]
    for g in skipped:
        print(f"[pruner] skipping {', '.join(g.members)}: {g.reason}")
    groups = [g for g in channels.groups if g.prunable]
    require(groups, "no layer to prune: " + ("; ".join(f"{g.name}: {g.reason}" for g in skipped)
                                             or "only the output layers have units, and they cannot be removed"))
    return groups


def lambda_mu_schedule(settings):
    """The λ/μ schedule of ``settings``: it reads them, so a new knob needs no copying here."""
    return LambdaMuSchedule(settings)


def gate_phase_config(reference, settings):
    """The gate phase's training config: --max-epochs, no early stopping, and the network learning
    rate of --gate-lr-schedule (fixed, step and plateau through the shared loop; on-pruning is
    fixed here and dropped by :class:`DropOnPruning`). Built from the settings, not from the
    fine-tuning config, so that ``--epochs 0`` (no fine-tuning) is allowed."""
    schedule = "fixed" if settings.gate_lr_schedule == "on-pruning" else settings.gate_lr_schedule
    return finetune_config(reference, settings.replace(epochs=settings.max_epochs, patience=0, lr_schedule=schedule))


class GatePhase:
    """The gate phase of the pruner masks on ``model`` with validated ``settings``: the gates after the
    targeted channel groups, the penalty, the trainer, its callbacks, and at the end the smaller model. One
    implementation: :func:`run` (``compress --method pruner``) and :class:`kcompress.keras.pruner.Pruner`
    both build one. Everything is made in ``model``'s tf.distribute scope, so that a model built under a
    strategy trains under it with mirrored gates, λ and μ."""

    def __init__(self, model, settings):
        self.settings, self.name, self.strategy = settings, f"{model.name}_pruned", model.distribute_strategy
        require(settings.pruner_optimizer == "gradient" or self.strategy.num_replicas_in_sync == 1,
                "--pruner-optimizer markov cannot run on several replicas (each would draw its own proposals): "
                "use gradient")
        self.channels = Channels(model)
        self.targets = gate_targets(model, settings, self.channels)
        with self.strategy.scope():
            self.gated, gates = G.add_gates(model, list(self.targets))
            G.spread_gates(gates, settings.gate_init_spread)
            self.penalty = G.PrunerPenalty(gates, self.targets, rejection=settings.rejection)
            self.trainer = G.GateTrainer(self.gated, self.penalty, mode=settings.pruner_optimizer,
                                         delta=settings.markov_delta, pruning_only=settings.pruning_loss_only,
                                         gate_optimizer=keras.optimizers.Adam(settings.gate_lr))
        self.rule = self.lr_drop = None

    def callbacks(self, initial_task_loss=None):
        """The callbacks of the gate phase, made at the first call (``initial_task_loss``, the task loss of the
        model as given, seeds μ): the λ/μ rule, then the on-pruning learning-rate drop where
        --gate-lr-schedule asks for it. Later calls return the same ones: a schedule spans several fits."""
        s = self.settings
        if self.rule is None:
            self.rule = PrunerCallback(self.penalty, lambda_mu_schedule(s), s.gate_epsilon, initial_task_loss)
            if s.gate_lr_schedule == "on-pruning":
                self.lr_drop = DropOnPruning(self.penalty, s.lr_drop_share, s.gamma)
        return [self.rule] + ([self.lr_drop] if self.lr_drop else [])

    def pruned(self):
        """The plain smaller model: the gates left out and the units they closed removed for real (the n
        with the largest gates kept per group), made in the model's strategy scope."""
        with self.strategy.scope():
            return remove_units(G.strip_gates(self.gated), G.kept_units(self.penalty), name=self.name)

    def stats(self, epochs):
        """What the gate phase did in ``epochs`` epochs: targets and groups, the units kept, whether and
        when the gates converged, the λ raises, λ and μ at the end and the final gate values."""
        epsilon, rule = self.settings.gate_epsilon, self.rule
        summary = G.gate_summary(self.penalty, epsilon)
        keep = G.kept_units(self.penalty)
        return {
            "targets": self.targets,
            "groups": {name: self.channels.group_of(name).members for name in self.targets},
            "unprunable_groups": {g.name: g.reason for g in self.channels.groups if not g.prunable},
            "kept_units": keep,
            "units": {name: {"before": len(summary["values"][name]), "after": len(idx)} for name, idx in keep.items()},
            "gate_epochs": epochs,
            "converged": rule.converged_epoch is not None,
            "converged_epoch": rule.converged_epoch,
            "open_at_end": summary["open"],
            "gates_undecided_at_end": {n: int(((v > epsilon) & (v < 1 - epsilon)).sum())
                                       for n, v in summary["values"].items()},
            "lambda_raises": [{"epoch": e, "lambda": lam, "why": why} for e, lam, why in rule.schedule.raises],
            "final_lambda": float(self.penalty.lam.numpy()),
            "final_mu": float(self.penalty.mu.numpy()),
            "lr_dropped_epoch": self.lr_drop.dropped_epoch if self.lr_drop else None,
            "gate_values": {n: np.round(v, 4).tolist() for n, v in summary["values"].items()},
        }


def train_gates(reference, phase):
    """Train ``phase``'s gated model until the gates converge or --max-epochs; returns the history."""
    cfg = gate_phase_config(reference, phase.settings)
    callbacks = phase.callbacks(task_loss(reference.model, reference, cfg))
    return fit(phase.trainer, reference.data, cfg, callbacks=callbacks)


def task_loss(model, reference, cfg):
    """The task loss of ``model`` on the training split (seeds the adaptive μ)."""
    loss = get_loss(cfg.loss, reference.data, cfg.lse_temperature, cfg.loss_reduction)
    return float(loss(reference.data.y_train, model.predict(reference.data.x_train, verbose=0, batch_size=1024)))


def run(reference, settings):
    phase = GatePhase(reference.model, settings)
    start = time.perf_counter()
    gate_history = train_gates(reference, phase)
    gate_seconds = time.perf_counter() - start
    pruned, facts = phase.pruned(), phase.stats(len(gate_history["loss"]))
    history = gate_history
    if settings.epochs > 0:
        history = merge_histories(gate_history, fit(pruned, reference.data, finetune_config(reference, settings)))
    values = facts.pop("gate_values")  # last in run.json, after what only the command records
    record = {**facts, "gate_seconds": gate_seconds, "execution": gate_history.execution,
              "finetune_epochs": settings.epochs, "stall_threshold": settings.stall_threshold, "gate_values": values}
    if not record["converged"]:
        print(f"[pruner] warning: gates did not converge in {record['gate_epochs']} epochs (open "
              f"{record['open_at_end']} vs targets {phase.targets}); kept the top-n gates anyway — raise "
              f"--max-epochs or {'--markov-delta' if settings.pruner_optimizer == 'markov' else '--gate-lr'}")
    return CompressionResult(model=pruned, record=record, history=history,
                             resolved=unset_values(settings, gate_phase_config(reference, settings).to_dict()),
                             plots=lambda folder: plot_gates(gate_history, record, folder))


def plot_gates(history, record, folder):
    """``pruner.png``: the diagnostics per epoch of the gate training (L_task, L_sel, L_rej,
    λ, μ, open gates, gate motion), and ``gates.png``: the final gate values per layer, sorted."""
    labels = {"loss": "L_task", "l_sel": "L_sel", "l_rej": "L_rej", "l_pru": "L_pru", "lam": "λ", "mu": "μ"}
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    panels = [("losses", ("loss", "l_sel", "l_rej", "l_pru"), True), ("λ and μ", ("lam", "mu"), True),
              ("open gates", tuple(k for k in history if k.startswith("open_") and k != "open_gates"), False),
              ("gate motion (σ variance over window)", ("gate_motion",), True)]
    for ax, (title, keys, log) in zip(axes.flat, panels):
        for key in keys:
            ax.plot(epochs, history[key], marker=".", ms=3, label=labels.get(key, key))
        for raise_ in record["lambda_raises"]:
            ax.axvline(raise_["epoch"], color="grey", lw=0.5, ls=":")
        if log:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for name, n in record["targets"].items():
        axes[1, 0].axhline(n, color="k", lw=0.6, ls="--")
    axes[1, 1].axhline(record["stall_threshold"], color="r", lw=0.6, ls="--", label="stall threshold")
    fig.suptitle(f"pruner masks: gate training ({'converged' if record['converged'] else 'NOT converged'} "
                 f"after {record['gate_epochs']} epochs; dotted = λ raises)")
    save_figure(fig, folder / "pruner.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in record["gate_values"].items():
        ax.plot(np.sort(values)[::-1], label=f"{name} (keep {record['targets'][name]})")
    ax.set_xlabel("gate (sorted)")
    ax.set_ylabel("σ(w) at the end")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, folder / "gates.png")
