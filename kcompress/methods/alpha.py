"""The α-schedule: narrower parallel branches take over from the original layers.

Every prunable layer gets a branch with ``prune`` fewer parameters (a rank-r bottleneck,
see :mod:`kcompress.blend`); the layer's output becomes ``α·original(x) + (1−α)·branch(x)``,
by default mixed before the layer's activation (``--blend-at output``: after it).
α starts at 1 and falls step by step to 0 (``exp``: α ← α·(1 − decay) until below
``--alpha-min``, then 0; ``linear``: α ← α − decay; ``list``: the values given). At each α
the model is trained — on the true labels, or (``--target teacher``) on the original
model's outputs with the mean squared error per output value — with the learning rate
reset to ``--lr`` and cut by ``gamma`` when the validation loss stalls for
``--alpha-patience`` epochs. An α ends after ``--epochs-per-alpha`` epochs or, by default,
once the learning rate has been cut ``--alpha-lr-drops`` times: that plateau-based end
keeps the default schedule (58 α values) practical without early stopping, which the seed
found cut training short (``--patience`` turns classic early stopping on if wanted). The
optimizer defaults to Adam at 1e-3 (SGD with momentum at the reference's 0.05 diverged right
after α resets). At α = 0 the originals are removed and the last step trains the plain branch
model that is saved. With a teacher target every epoch also logs the task metric on the true
labels (``label_error`` %, see :class:`LabelScores`). By default layers with under 1 % of the Dense/Conv2D parameters keep
their original form (see :func:`prunable_layers`).
"""
import argparse
from dataclasses import replace

from tqdm import tqdm

from kcompress import blend
from kcompress.backend import keras
from kcompress.errors import require
from kcompress.methods.base import CompressionResult, finetune_config, target_layers
from kcompress.objectives import predict, primary_metric, scores
from kcompress.plots import training_curves
from kcompress.training import fit

NAME = "alpha"
HELP = "α-schedule: parallel narrower branches (rank-r bottlenecks) take over from the original layers"
SWEEPABLE = ("prune", "target")
SCHEDULES = ("exp", "linear", "list")
TARGETS = ("labels", "teacher")
MIN_SHARE = 0.01  # default layers: those with at least 1 % of the Dense/Conv2D parameters or multiply-adds
CONV_BRANCHES = ("pooled", "full")
DEFAULTS = dict(prune=0.65, alpha_schedule="exp", alpha_decay=0.05, alpha_min=0.05, alpha_list=None,
                epochs_per_alpha=350, alpha_patience=2, alpha_lr_drops=2, target="labels", freeze_original=True,
                blend_at="preactivation", conv_branch="pooled")
BLEND_AT = ("preactivation", "output")


def add_arguments(group):
    d, add = DEFAULTS, group.add_argument
    add("--prune", default=d["prune"], help="share of each layer's parameters the branch drops, in (0, 1)")
    add("--alpha-schedule", choices=SCHEDULES, default=d["alpha_schedule"],
        help="how α falls from 1 to 0: exp α←α(1−decay), linear α←α−decay, or --alpha-list")
    add("--alpha-decay", type=float, default=d["alpha_decay"], help="rate (exp) or step (linear) of the α schedule")
    add("--alpha-min", type=float, default=d["alpha_min"], help="below this α jumps to 0")
    add("--alpha-list", help="decreasing α values for --alpha-schedule list, e.g. 0.8,0.5,0.2 (0 is appended)")
    add("--epochs-per-alpha", type=int, default=d["epochs_per_alpha"],
        help="most epochs at each α > 0, and at the last step α = 0 unless --epochs is given")
    add("--alpha-patience", type=int, default=d["alpha_patience"],
        help="epochs without validation-loss improvement before the learning rate is cut by gamma")
    add("--alpha-lr-drops", type=int, default=d["alpha_lr_drops"],
        help="move to the next α once the learning rate has been cut this often; 0 = train --epochs-per-alpha")
    add("--target", default=d["target"],
        help="labels (task loss) or teacher (mean squared error per output to the original model's outputs)")
    add("--blend-at", choices=BLEND_AT, default=d["blend_at"],
        help="mix the two paths before the layer's activation (act(α·Wx + (1−α)·branch)) or after it")
    add("--conv-branch", choices=CONV_BRANCHES, default=d["conv_branch"],
        help="pooled: a conv followed by a 2×2 max-pool gets its branch at stride 2, upsampled while blending "
             "(pool and upsampling cancel and are dropped at α = 0: a quarter of the work); full: at the conv's stride")
    frozen = group.add_mutually_exclusive_group()
    frozen.add_argument("--freeze-original", dest="freeze_original", action="store_true", default=argparse.SUPPRESS,
                        help="keep the pretrained weights fixed, train only the branches (the default)")
    frozen.add_argument("--train-original", dest="freeze_original", action="store_false", default=argparse.SUPPRESS,
                        help="train the pretrained weights too")


def method_settings(settings):
    """The method's settings with defaults filled in, converted and validated (exit 2 if bad)."""
    s = {**DEFAULTS, **{k: v for k, v in settings.items() if k in DEFAULTS and v is not None}}
    s["prune"] = _number(s["prune"], "--prune")
    require(0 < s["prune"] < 1, f"--prune must be in (0, 1), got {s['prune']}")
    require(s["blend_at"] in BLEND_AT, f"unknown --blend-at {s['blend_at']!r} (one of {', '.join(BLEND_AT)})")
    require(s["conv_branch"] in CONV_BRANCHES,
            f"unknown --conv-branch {s['conv_branch']!r} (one of {', '.join(CONV_BRANCHES)})")
    require(s["target"] in TARGETS, f"unknown --target {s['target']!r} (one of {', '.join(TARGETS)})")
    for key, least in (("epochs_per_alpha", 1), ("alpha_patience", 1), ("alpha_lr_drops", 0)):
        flag = "--" + key.replace("_", "-")
        require(int(s[key]) >= least, f"{flag} must be an integer >= {least}, got {s[key]}")
    s["schedule"] = alpha_schedule(s["alpha_schedule"], s["alpha_decay"], s["alpha_min"], s["alpha_list"])
    return s


def _number(value, flag):
    try:
        return float(value)
    except (TypeError, ValueError):
        require(False, f"{flag} must be a number, got {value!r}")


def alpha_schedule(kind="exp", decay=0.05, alpha_min=0.05, values=None):
    """The α values trained after α = 1 (which needs no training), ending with 0."""
    require(kind in SCHEDULES, f"unknown --alpha-schedule {kind!r} (one of {', '.join(SCHEDULES)})")
    if kind == "list":
        require(values, "--alpha-schedule list needs --alpha-list, e.g. 0.8,0.5,0.2,0")
        alphas = [_number(v, "--alpha-list") for v in (values.split(",") if isinstance(values, str) else values)]
        require(all(0 <= a < 1 for a in alphas), f"--alpha-list values must be in [0, 1), got {alphas}")
        require(all(a > b for a, b in zip(alphas, alphas[1:])),
                f"--alpha-list must be strictly decreasing, got {alphas}")
        return alphas if alphas[-1] == 0 else alphas + [0.0]
    decay, alpha_min = _number(decay, "--alpha-decay"), _number(alpha_min, "--alpha-min")
    require(0 < decay < 1, f"--alpha-decay must be in (0, 1), got {decay}")
    require(0 < alpha_min < 1, f"--alpha-min must be in (0, 1), got {alpha_min}")
    alphas, k = [], 1
    while True:
        a = (1 - decay) ** k if kind == "exp" else round(1 - k * decay, 12)
        if a < alpha_min:
            return alphas + [0.0]
        alphas.append(a)
        k += 1


class StopAfterLrDrops(keras.callbacks.Callback):
    """Ends a training run once the learning rate has been cut ``drops`` times (0 = never)."""

    def __init__(self, drops):
        super().__init__()
        self.drops = int(drops)

    def _lr(self):
        return float(keras.backend.get_value(self.model.optimizer.learning_rate))

    def on_train_begin(self, logs=None):
        self.count, self.last = 0, self._lr()

    def on_epoch_end(self, epoch, logs=None):
        lr = self._lr()
        if lr < self.last * (1 - 1e-6):
            self.count, self.last = self.count + 1, lr
        if self.drops and self.count >= self.drops:
            self.model.stop_training = True


class LabelScores(keras.callbacks.Callback):
    """Adds the task metric on the true labels to each epoch's logs as ``label_<metric>``.

    With ``--target teacher`` the loss and Keras' metrics compare with the teacher's outputs
    (logits), which says nothing direct about the labels; this scores the model on the
    labels of ``data``'s validation split (its training split when it has none) once per
    epoch: one forward pass over that split (the MNIST sample's 1,000 validation images).
    """

    def __init__(self, data):
        super().__init__()
        self.data = data
        self.x, self.y = (data.x_val, data.y_val) if data.has_val else (data.x_train, data.y_train)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            found = scores(self.y, predict(self.model, self.x), self.data)
            logs.update({f"label_{k}": v for k, v in found.items()})


def teacher_data(model, data):
    """``data`` with every split's targets replaced by ``model``'s outputs (computed once):
    a regression task whose MSE loss is the mean over output values of the squared error."""
    return replace(data, y_train=predict(model, data.x_train), y_val=predict(model, data.x_val),
                   y_test=predict(model, data.x_test), task="regression", num_classes=0, y_scale=1.0)


def prunable_layers(model, names=None):
    """The layers that get a branch: those named (Dense or Conv2D only), else every Dense and
    Conv2D layer holding at least ``MIN_SHARE`` of their parameters or of their multiply-adds.
    A branch of a layer that is tiny on both counts saves next to nothing but can cripple it (a
    rank-3 bottleneck before 10 logits), so those keep their original form unless named; a
    first conv has few parameters but runs at every pixel, so it counts. At least one is needed."""
    layers = target_layers(model, names)
    for layer in layers:
        kind = type(layer).__name__
        require(kind in ("Dense", "Conv2D"),
                f"--layers: {layer.name} is a {kind}; the α-schedule prunes Dense and Conv2D layers")
    if not names:
        params, macs = sum(blend.layer_params(l) for l in layers), sum(blend.layer_macs(l) for l in layers)
        layers = [l for l in layers
                  if blend.layer_params(l) >= MIN_SHARE * params or blend.layer_macs(l) >= MIN_SHARE * macs]
    require(layers, "no prunable layer (Dense or Conv2D) to give a branch; check --layers")
    return layers


def run(reference, settings):
    """Blend branches into a copy of the reference, train through the α schedule, and return
    the plain branch model trained at α = 0 (the originals removed)."""
    s = method_settings(settings)
    layers = prunable_layers(reference.model, settings.get("layers"))
    pooled = blend.pooled_convs(reference.model) if s["conv_branch"] == "pooled" else ()
    branches = {l.name: dict(zip(("rank", "branch_params"), blend.branch_rank(l, s["prune"])),
                             original_params=blend.layer_params(l), pooled=l.name in pooled) for l in layers}
    teacher = s["target"] == "teacher"
    data = teacher_data(reference.model, reference.data) if teacher else reference.data
    cfg = finetune_config(reference, settings, epochs=s["epochs_per_alpha"], optimizer="adam", lr=1e-3,
                          lr_schedule="plateau", plateau_patience=s["alpha_patience"],
                          loss="mse" if teacher else reference.train.loss)
    step_cfg = replace(cfg, epochs=int(s["epochs_per_alpha"]))
    model = blend.blend_model(reference.model, {n: b["rank"] for n, b in branches.items()},
                              before_activation=s["blend_at"] == "preactivation", pooled=pooled)
    history, rows, markers = {}, [], []
    for alpha in tqdm(s["schedule"], desc="α schedule", unit="α"):
        if alpha == 0:
            model = blend.strip_model(reference.model, model)
        blend.set_alpha(model, alpha)
        blend.freeze_original(model, s["freeze_original"])
        markers.append((len(history.get("loss", ())) + 0.5, f"α={alpha:.3g}"))
        callbacks = [StopAfterLrDrops(s["alpha_lr_drops"])] + ([LabelScores(reference.data)] if teacher else [])
        h = fit(model, data, cfg if alpha == 0 else step_cfg, callbacks=callbacks)
        h["alpha"] = [float(alpha)] * len(h["loss"])
        for k, v in h.items():
            history.setdefault(k, []).extend(v)
        rows.append(alpha_row(alpha, h, model, reference.data))
    blend.freeze_original(model, False)
    record = method_record(s, branches, rows)
    return CompressionResult(model=model, record=record, history=history,
                             plots=lambda folder: write_outputs(folder, history, markers, rows, s))


def alpha_row(alpha, h, model, data):
    """One line of the per-α table: epochs, best validation loss, and the task metric (true
    labels) at the end of this α, of the blended model and of its branches alone (α = 0)."""
    x, y, split = (data.x_val, data.y_val, "val") if data.has_val else (data.x_train, data.y_train, "train")
    metric = primary_metric(data.task).replace("test_", "")
    blended = scores(y, predict(model, x), data)[metric]
    blend.set_alpha(model, 0.0)
    branches = scores(y, predict(model, x), data)[metric]
    blend.set_alpha(model, alpha)
    loss_key = "val_loss" if "val_loss" in h else "loss"
    return {"alpha": alpha, "epochs": len(h["loss"]), f"best_{loss_key}": min(h[loss_key]),
            f"{split}_{metric}": blended, f"{split}_{metric}_branches_only": branches}


def method_record(s, branches, rows):
    """What run.json records about the α-schedule."""
    original = sum(b["original_params"] for b in branches.values())
    kept = sum(b["branch_params"] for b in branches.values())
    return {
        "prune": s["prune"], "target": s["target"], "freeze_original": s["freeze_original"], "blend_at": s["blend_at"],
        "conv_branch": s["conv_branch"],
        "schedule": s["schedule"], "epochs_per_alpha": s["epochs_per_alpha"], "alpha_lr_drops": s["alpha_lr_drops"],
        "branches": branches, "prunable_params": original, "branch_params": kept, "kept_share": kept / original,
        "per_alpha": rows,
    }


def write_outputs(folder, history, markers, rows, s):
    """Training curves with the α changes marked, and the per-α table (markdown + CSV)."""
    title = f"α-schedule, prune {s['prune']}, {s['target']} target"
    training_curves(history, folder / "training.png", title=title, markers=markers, color_by="alpha")
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    md = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    md += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    (folder / "alpha.md").write_text("\n".join(md) + "\n")
    csv = [",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]
    (folder / "alpha.csv").write_text("\n".join(csv) + "\n")

