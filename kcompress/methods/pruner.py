"""Method "pruner": pruner masks — differentiable node pruning, then real unit removal.

Gates σ(wᵢ) go after the chosen layers (default: every hidden Dense/Conv2D layer); the
gated model trains on L_task + μ·λ·(L_sel + L_rej) (see :mod:`kcompress.gates`) with the
λ/μ schedule of :mod:`kcompress.pruner_schedule` until every gate is within ε of 0 or 1
with exactly n open per layer (or ``--max-epochs``). Then the n units with the largest
gates per layer are kept, the others removed for real (:mod:`kcompress.unit_removal`), and
the smaller plain model is fine-tuned briefly.
"""
import math
import time

import numpy as np

from kcompress import gates as G
from kcompress.backend import keras
from kcompress.errors import UsageError, require
from kcompress.methods.base import CompressionResult, finetune_config, target_layers
from kcompress.pruner_schedule import LambdaMuSchedule, PrunerCallback
from kcompress.training import fit
from kcompress.unit_removal import removal_plan, remove_units

NAME = "pruner"
HELP = "pruner masks: learn a gate per unit, keep n per layer, remove the rest for real"
SWEEPABLE = ("keep", "rejection", "pruner_optimizer")
DEFAULTS = dict(keep=0.35, rejection="sum", lambda_start=1.0, lambda_factor=10.0, lambda_every=20, lambda_max=1e7,
                mu="adaptive", gate_lr=0.01, pruner_optimizer="gradient", markov_delta=0.1, gate_epsilon=0.01,
                max_epochs=160, finetune_epochs=10, stall_window=5, stall_threshold=1e-5)


def add_arguments(g):
    d = DEFAULTS
    g.add_argument("--keep", help=f"share of units kept in each gated layer, in (0, 1] (default {d['keep']})")
    g.add_argument("--keep-units", help="exact units to keep per layer, e.g. dense_1=105,dense_2=35 "
                                        "(these layers are gated; with --layers, the others use --keep)")
    g.add_argument("--rejection", choices=G.REJECTIONS,
                   help="L_rej: sum Σσ(1−σ)/N, or product (adds N·Πσ) (default sum)")
    g.add_argument("--lambda-start", type=float, help="first λ (default 1)")
    g.add_argument("--lambda-factor", type=float, help="λ multiplier at each raise (default 10)")
    g.add_argument("--lambda-every", type=int, help="epochs between λ raises (default 20)")
    g.add_argument("--lambda-max", type=float, help="largest λ (default 1e7)")
    g.add_argument("--mu", help="'adaptive' (μ = ⟨L_task⟩/⟨L_pru⟩ over the last 10 epochs) or a fixed "
                                "coefficient (default adaptive)")
    g.add_argument("--lambda-on-stall", choices=("on", "off"),
                   help="also raise λ when the gates stop moving (σ variance over 5 epochs < 1e-5) (default on)")
    g.add_argument("--gate-lr", type=float, help="Adam learning rate of the gate weights (default 0.01)")
    g.add_argument("--pruner-optimizer", choices=("gradient", "markov"),
                   help="how gates learn: gradient (Adam at --gate-lr) or markov (w ← w + δ·U[−1,1], kept if "
                        "L_tot falls); network weights always by gradient (--optimizer) (default gradient)")
    g.add_argument("--markov-delta", type=float, help="δ of the Markov proposals (default 0.1)")
    g.add_argument("--gate-epsilon", type=float, help="gates are decided when within ε of 0 or 1 (default 0.01)")
    g.add_argument("--max-epochs", type=int, help="epoch limit of the gate training (default 160)")
    g.add_argument("--finetune-epochs", type=int,
                   help="fine-tuning epochs after removal (default: --epochs if given, else 10)")


def _setting(settings, key, cast=None):
    value = settings.get(key)
    value = DEFAULTS[key] if value is None else value
    if cast is None:
        return value
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise UsageError(f"--{key.replace('_', '-')} {value!r}: expected a number") from None


def gate_targets(model, settings, opts):
    """``{layer: n}``: units to keep per gated layer, from --keep / --keep-units / --layers."""
    keep, exact = opts["keep"], opts["keep_units"]
    names = settings.get("layers") or list(exact)
    layers = target_layers(model, names) if names else hidden_layers(model)
    names = [l.name for l in layers]
    stray = [n for n in exact if n not in names]
    require(not stray, f"--keep-units: {', '.join(stray)} not among the gated layers ({', '.join(names)})")
    targets = {}
    for layer in layers:
        require(type(layer).__name__ in ("Dense", "Conv2D"), f"--layers: {layer.name} is not a Dense or Conv2D layer")
        width = int(layer.get_weights()[0].shape[-1])
        n = exact.get(layer.name, max(1, int(round(keep * width))))
        require(1 <= n <= width, f"--keep-units: {layer.name}={n} must be in 1..{width}")
        targets[layer.name] = n
    require(targets, "no layer to gate (give --layers)")
    removal_plan(model, {name: range(n) for name, n in targets.items()})  # fails now, not after training
    return targets


def parse_keep_units(text):
    """``"dense_1=105,dense_2=35"`` -> ``{"dense_1": 105, "dense_2": 35}``."""
    if not text:
        return {}
    out = {}
    for item in str(text).split(","):
        name, _, n = item.partition("=")
        require(name and n.strip().lstrip("-").isdigit(),
                f"--keep-units {text!r}: expected LAYER=n,... e.g. dense_1=105")
        out[name.strip()] = int(n)
    return out


def hidden_layers(model):
    """Every Dense/Conv2D layer except the last (the output layer's units cannot go)."""
    return target_layers(model)[:-1]


def schedule_from(settings):
    mu = _setting(settings, "mu")
    if mu != "adaptive":
        mu = _setting(settings, "mu", float)
    return LambdaMuSchedule(
        lambda_start=_setting(settings, "lambda_start", float),
        lambda_factor=_setting(settings, "lambda_factor", float),
        lambda_every=_setting(settings, "lambda_every", int), lambda_max=_setting(settings, "lambda_max", float),
        mu=mu, on_stall=(settings.get("lambda_on_stall") or "on") == "on",
        stall_window=DEFAULTS["stall_window"], stall_threshold=DEFAULTS["stall_threshold"],
    ).validate()


def gate_options(settings):
    """The validated choices of the gate training (everything but the layers)."""
    opts = {key: _setting(settings, key, cast) for key, cast in (
        ("keep", float), ("gate_lr", float), ("markov_delta", float), ("gate_epsilon", float), ("max_epochs", int))}
    require(0 < opts["keep"] <= 1, f"--keep must be in (0, 1], got {opts['keep']}")
    require(opts["gate_lr"] > 0, f"--gate-lr must be positive, got {opts['gate_lr']}")
    require(opts["markov_delta"] > 0, f"--markov-delta must be positive, got {opts['markov_delta']}")
    require(0 < opts["gate_epsilon"] < 0.5, f"--gate-epsilon must be in (0, 0.5), got {opts['gate_epsilon']}")
    require(opts["max_epochs"] > 0, f"--max-epochs must be positive, got {opts['max_epochs']}")
    ft = settings.get("finetune_epochs")
    require(ft is None or int(ft) >= 0, f"--finetune-epochs must be >= 0, got {ft}")
    opts.update(mode=_setting(settings, "pruner_optimizer"), rejection=_setting(settings, "rejection"),
                keep_units=parse_keep_units(settings.get("keep_units")), schedule=schedule_from(settings),
                finetune_epochs=int(ft if ft is not None else settings.get("epochs") or DEFAULTS["finetune_epochs"]))
    require(opts["mode"] in ("gradient", "markov"),
            f"unknown --pruner-optimizer {opts['mode']!r} (one of gradient, markov)")
    require(opts["rejection"] in G.REJECTIONS, f"unknown --rejection {opts['rejection']!r} (one of sum, product)")
    return opts


def check_settings(settings):
    """Validate the flags before any work starts (called by ``compress``; layers are checked in ``run``)."""
    gate_options(settings)


def train_gates(reference, gated, penalty, settings, opts):
    """Train the gated model until the gates converge or --max-epochs; returns (history, callback)."""
    cfg = finetune_config(reference, settings, lr=0.01)
    cfg.epochs, cfg.patience, cfg.lr_schedule = opts["max_epochs"], 0, "fixed"
    trainer = G.GateTrainer(gated, penalty, mode=opts["mode"], gate_optimizer=keras.optimizers.Adam(opts["gate_lr"]),
                            delta=opts["markov_delta"])
    initial = task_loss(reference.model, reference, cfg)
    callback = PrunerCallback(penalty, opts["schedule"], opts["gate_epsilon"], initial)
    history = fit(trainer, reference.data, cfg, callbacks=[callback])
    return history, callback


def task_loss(model, reference, cfg):
    """The task loss of ``model`` on the training split (seeds the adaptive μ)."""
    from kcompress.objectives import get_loss

    loss = get_loss(cfg.loss, reference.data.task, cfg.lse_temperature)
    return float(loss(reference.data.y_train, model.predict(reference.data.x_train, verbose=0, batch_size=1024)))


def merge_histories(first, second):
    """Concatenate two per-epoch histories; a key missing from one is padded with NaN."""
    n1, n2 = len(next(iter(first.values()), [])), len(next(iter(second.values()), []))
    keys = list(first) + [k for k in second if k not in first]
    return {k: list(first.get(k, [math.nan] * n1)) + list(second.get(k, [math.nan] * n2)) for k in keys}


def run(reference, settings):
    model = reference.model
    opts = gate_options(settings)
    targets = gate_targets(model, settings, opts)
    gated, gates = G.add_gates(model, list(targets))
    penalty = G.PrunerPenalty(gates, targets, rejection=opts["rejection"])
    start = time.perf_counter()
    gate_history, callback = train_gates(reference, gated, penalty, settings, opts)
    gate_seconds = time.perf_counter() - start
    epsilon = opts["gate_epsilon"]
    summary = G.gate_summary(penalty, epsilon)
    keep = G.kept_units(penalty)
    pruned = remove_units(G.strip_gates(gated), keep, name=f"{model.name}_pruned")
    ft_epochs = opts["finetune_epochs"]
    history = gate_history
    if ft_epochs > 0:
        cfg = finetune_config(reference, {**settings, "epochs": ft_epochs}, lr=0.01)
        history = merge_histories(gate_history, fit(pruned, reference.data, cfg))
    epochs = len(gate_history["loss"])
    record = {
        "targets": targets,
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
        "gate_seconds": gate_seconds,
        "finetune_epochs": ft_epochs,
        "gate_values": {n: np.round(v, 4).tolist() for n, v in summary["values"].items()},
    }
    if not record["converged"]:
        print(f"[pruner] warning: gates did not converge in {epochs} epochs (open {summary['open']} vs targets "
              f"{targets}); kept the top-n gates anyway — raise --max-epochs or "
              f"{'--markov-delta' if opts['mode'] == 'markov' else '--gate-lr'}")
    return CompressionResult(model=pruned, record=record, history=history,
                             plots=lambda folder: plot_gates(gate_history, record, folder))


def plot_gates(history, record, folder):
    """``pruner.png``: the diagnostics per epoch of the gate training (L_task, L_sel, L_rej,
    λ, μ, open gates, gate motion), and ``gates.png``: the final gate values per layer, sorted."""
    from kcompress.plots import plt, save_figure

    labels = {"loss": "L_task", "l_sel": "L_sel", "l_rej": "L_rej", "lam": "λ", "mu": "μ"}
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    panels = [("losses", ("loss", "l_sel", "l_rej"), True), ("λ and μ", ("lam", "mu"), True),
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
    axes[1, 1].axhline(DEFAULTS["stall_threshold"], color="r", lw=0.6, ls="--", label="stall threshold")
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
