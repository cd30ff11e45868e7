"""Method "pruner": pruner masks — differentiable node pruning, then real unit removal.

Gates σ(wᵢ) go after the chosen layers, one gate per channel group shared by every layer of the
group (:mod:`kcompress.core.channels`; default: every prunable group); the
gated model trains on L_task + μ·λ·(L_sel + L_rej) (see :mod:`kcompress.methods.pruner.gates`;
or on the pruning loss alone with ``--pruning-loss-only``), the network learning rate following
``--gate-lr-schedule``, with the λ/μ schedule of :mod:`kcompress.methods.pruner.schedule` until
every gate is within ε of 0 or 1 with exactly n open per layer (or ``--max-epochs``). Then the n
units with the largest gates per layer are kept, the others removed for real (:mod:`kcompress.methods.pruner.units`), and
the smaller plain model is fine-tuned briefly.
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


def train_gates(reference, gated, penalty, settings):
    """Train the gated model until the gates converge or --max-epochs; returns (history, callbacks)."""
    cfg = gate_phase_config(reference, settings)
    trainer = G.GateTrainer(gated, penalty, mode=settings.pruner_optimizer, delta=settings.markov_delta,
                            gate_optimizer=keras.optimizers.Adam(settings.gate_lr),
                            pruning_only=settings.pruning_loss_only)
    initial = task_loss(reference.model, reference, cfg)
    callbacks = [PrunerCallback(penalty, lambda_mu_schedule(settings), settings.gate_epsilon, initial)]
    if settings.gate_lr_schedule == "on-pruning":
        callbacks.append(DropOnPruning(penalty, settings.lr_drop_share, cfg.gamma))
    history = fit(trainer, reference.data, cfg, callbacks=callbacks)
    return history, callbacks


def task_loss(model, reference, cfg):
    """The task loss of ``model`` on the training split (seeds the adaptive μ)."""
    loss = get_loss(cfg.loss, reference.data, cfg.lse_temperature, cfg.loss_reduction)
    return float(loss(reference.data.y_train, model.predict(reference.data.x_train, verbose=0, batch_size=1024)))


def run(reference, settings):
    model = reference.model
    channels = Channels(model)
    targets = gate_targets(model, settings, channels)
    gated, gates = G.add_gates(model, list(targets))
    G.spread_gates(gates, settings.gate_init_spread)
    penalty = G.PrunerPenalty(gates, targets, rejection=settings.rejection)
    start = time.perf_counter()
    gate_history, (callback, *lr_drop) = train_gates(reference, gated, penalty, settings)
    gate_seconds = time.perf_counter() - start
    epsilon = settings.gate_epsilon
    summary = G.gate_summary(penalty, epsilon)
    keep = G.kept_units(penalty)
    pruned = remove_units(G.strip_gates(gated), keep, name=f"{model.name}_pruned")
    ft_epochs = settings.epochs
    history = gate_history
    if ft_epochs > 0:
        history = merge_histories(gate_history, fit(pruned, reference.data, finetune_config(reference, settings)))
    epochs = len(gate_history["loss"])
    record = {
        "targets": targets,
        "groups": {name: channels.group_of(name).members for name in targets},
        "unprunable_groups": {g.name: g.reason for g in channels.groups if not g.prunable},
        "kept_units": keep,
        "units": {name: {"before": len(summary["values"][name]), "after": len(idx)} for name, idx in keep.items()},
        "gate_epochs": epochs,
        "converged": callback.converged_epoch is not None,
        "converged_epoch": callback.converged_epoch,
        "open_at_end": summary["open"],
        "gates_undecided_at_end": {n: int(((v > epsilon) & (v < 1 - epsilon)).sum())
                                   for n, v in summary["values"].items()},
        "lambda_raises": [{"epoch": e, "lambda": lam, "why": why} for e, lam, why in callback.schedule.raises],
        "final_lambda": float(penalty.lam.numpy()),
        "final_mu": float(penalty.mu.numpy()),
        "lr_dropped_epoch": lr_drop[0].dropped_epoch if lr_drop else None,
        "gate_seconds": gate_seconds,
        "execution": gate_history.execution,
        "finetune_epochs": ft_epochs,
        "stall_threshold": settings.stall_threshold,
        "gate_values": {n: np.round(v, 4).tolist() for n, v in summary["values"].items()},
    }
    if not record["converged"]:
        print(f"[pruner] warning: gates did not converge in {epochs} epochs (open {summary['open']} vs targets "
              f"{targets}); kept the top-n gates anyway — raise --max-epochs or "
              f"{'--markov-delta' if settings.pruner_optimizer == 'markov' else '--gate-lr'}")
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
