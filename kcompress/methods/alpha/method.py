"""The α-schedule: narrower parallel branches take over from the original layers.

Every prunable layer gets a branch with ``prune`` fewer parameters (a rank-r bottleneck,
see :mod:`kcompress.methods.alpha.blend`); the layer's output becomes ``α·original(x) + (1−α)·branch(x)``,
by default mixed before the layer's activation (``--blend-at output``: after it).
α starts at 1 and falls step by step to 0 (``exp``: α = e^(−decay·k), the research note's reading, until
below ``--alpha-min``, then 0; ``geometric``: α ← α·(1 − decay); ``linear``: α ← α − decay; ``list``: the
values given). At each α
the model is trained — on the true labels, or (``--target teacher``) on the original
model's outputs with the mean squared error per output value — with the learning rate
reset to ``--lr`` and cut by ``gamma`` when the validation loss stalls for
``--alpha-patience`` epochs. An α ends after ``--epochs-per-alpha`` epochs or, by default,
once the learning rate has been cut ``--alpha-lr-drops`` times (both rules are
:class:`~kcompress.methods.alpha.stepping.AlphaScheduleCallback`'s, which
:class:`kcompress.keras.alpha.AlphaSchedule` runs in a user's own ``fit``): that plateau-based end
keeps the default schedule (59 α values) practical without early stopping, which cut training
short in the original experiments (``--patience`` turns classic early stopping on if wanted). The
optimizer defaults to Adam at 1e-3 (SGD with momentum at the reference's 0.05 diverged right
after α resets). At α = 0 the originals are removed and the last step trains the plain branch
model that is saved. With a teacher target every epoch also logs the task metric on the true
labels (``label_error`` %, see :class:`LabelScores`); the curves get one colour per α. By default
layers with under 1 % of the Dense/Conv2D parameters, and the layers that make the model's output,
keep their original form (see :func:`prunable_layers`).
"""
from dataclasses import replace

from kcompress.backend import keras
from kcompress.core.objectives import predict, primary_metric, scores
from kcompress.core.progress import progress
from kcompress.core.surgery import Graph, output_layers
from kcompress.errors import require
from kcompress.methods.alpha import blend
from kcompress.methods.alpha.stepping import AlphaScheduleCallback
from kcompress.methods.base import CompressionResult, finetune_config, target_layers, unset_values
from kcompress.reporting.plots import training_curves
from kcompress.reporting.tables import write_table
from kcompress.training.history import merge_histories
from kcompress.training.loop import fit

MIN_SHARE = 0.01  # default layers: those with at least 1 % of the Dense/Conv2D parameters or multiply-adds


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
                   y_test=predict(model, data.x_test), task="regression", num_classes=0, y_scale=1.0,
                   head="linear", metric=None)


def prunable_layers(model, names=None):
    """The layers that get a branch: those named (Dense or Conv2D only), else every Dense and
    Conv2D layer holding at least ``MIN_SHARE`` of their parameters or of their multiply-adds.
    A branch of a layer that is tiny on both counts saves next to nothing but can cripple it (a
    rank-3 bottleneck before 10 logits), so those keep their original form unless named; a
    first conv has few parameters but runs at every pixel, so it counts. So do the layers that make
    the model's output unless named: a rank-r bottleneck there confines the prediction to r
    directions (a two-output regression's outputs at rank 1 became collinear: mse 0.22 against the
    reference's 8.3e-4, bench/results/your_model.md). A layer called more than
    once (shared) is refused when named and skipped with a notice otherwise. At least one is needed."""
    layers, calls = target_layers(model, names), Graph(model).calls
    for layer in layers:
        kind = type(layer).__name__
        require(kind in ("Dense", "Conv2D"),
                f"--layers: {layer.name} is a {kind}; the α-schedule prunes Dense and Conv2D layers")
        require(not names or calls[layer.name] == 1,
                f"--layers: {layer.name} is called {calls[layer.name]} times (a shared layer); the α-schedule "
                "gives a branch to layers called once")
        if calls[layer.name] > 1:
            print(f"[alpha] skipping {layer.name}: it is called {calls[layer.name]} times (a shared layer)")
    layers = [l for l in layers if calls[l.name] == 1]
    if not names:
        params, macs = sum(blend.layer_params(l) for l in layers), sum(blend.layer_macs(l) for l in layers)
        layers = [l for l in layers
                  if blend.layer_params(l) >= MIN_SHARE * params or blend.layer_macs(l) >= MIN_SHARE * macs]
        heads = output_layers(model)
        for layer in layers:
            if layer.name in heads:
                print(f"[alpha] keeping {layer.name} whole: it makes the model's output (name it in --layers to "
                      "give it a branch anyway)")
        layers = [l for l in layers if l.name not in heads]
    require(layers, "no prunable layer (Dense or Conv2D) to give a branch; check --layers")
    return layers


def plan_branches(model, s, ranks=None):
    """``{layer: {rank, branch_params, original_params, pooled}}``: the layers that get a branch and its size.
    ``ranks`` (layer name → r): those layers at those ranks; unset: :func:`prunable_layers` of ``s.layers``,
    each at the rank that drops ``s.prune`` of its parameters. ``pooled``: the branch runs at stride 2 (a conv
    before a 2×2 max-pool, with ``s.conv_branch`` pooled; see :func:`~kcompress.methods.alpha.blend.pooled_convs`)."""
    layers = prunable_layers(model, list(ranks) if ranks else s.layers)
    pooled = blend.pooled_convs(model) if s.conv_branch == "pooled" else ()

    def size(layer):
        rank = ranks[layer.name] if ranks else blend.branch_rank(layer, s.prune)[0]
        return {"rank": rank, "branch_params": blend.branch_params(layer, rank)}

    return {l.name: {**size(l), "original_params": blend.layer_params(l), "pooled": l.name in pooled} for l in layers}


def blended_model(model, s, branches):
    """``model`` with the ``branches`` of :func:`plan_branches` blended in at α = 1, mixed where ``s.blend_at``
    says, the original layers frozen where ``s.freeze_original`` says (``model`` itself is left as it is)."""
    blended = blend.blend_model(model, {n: b["rank"] for n, b in branches.items()},
                                before_activation=s.blend_at == "preactivation",
                                pooled=[n for n, b in branches.items() if b["pooled"]])
    blend.freeze_original(blended, s.freeze_original)
    return blended


def run(reference, settings):
    """Blend branches into a copy of the reference, train through the α schedule, and return
    the plain branch model trained at α = 0 (the originals removed). Each α is a ``fit`` of its own
    (a fresh optimizer), which :class:`AlphaScheduleCallback` ends and whose learning-rate rule it runs."""
    s = settings
    branches = plan_branches(reference.model, s)
    teacher = s.target == "teacher"
    data = teacher_data(reference.model, reference.data) if teacher else reference.data
    cfg = finetune_config(reference, s, epochs=s.epochs_per_alpha, plateau_patience=s.alpha_patience,
                          loss="mse" if teacher else reference.train.loss)
    fit_cfg = replace(cfg, lr_schedule="fixed")  # the α's learning-rate rule is the callback's
    model = blended_model(reference.model, s, branches)
    parts, rows, markers = [], [], []
    for alpha in progress(s.alphas(), "α schedule", "α"):
        if alpha == 0:
            model = blend.strip_model(reference.model, model)
            blend.freeze_original(model, s.freeze_original)
        markers.append((sum(len(p["loss"]) for p in parts) + 0.5, f"α={alpha:.3g}"))
        callbacks = ([LabelScores(reference.data)] if teacher else []) + [AlphaScheduleCallback([alpha], s, cfg)]
        h = fit(model, data, replace(fit_cfg, epochs=s.epochs_at(alpha)), callbacks=callbacks,
                planned_epochs=cfg.epochs if alpha == 0 else s.epochs_per_alpha * (len(s.alphas()) - 1))
        parts.append(dict(h))
        rows.append(alpha_row(alpha, h, model, reference.data))
    blend.freeze_original(model, False)
    history = merge_histories(*parts)
    record = method_record(s, branches, rows)
    return CompressionResult(model=model, record=record, history=history, resolved=unset_values(s, cfg.to_dict()),
                             plots=lambda folder: write_outputs(folder, history, markers, rows, s))


def alpha_row(alpha, h, model, data):
    """One line of the per-α table: epochs, best validation loss, and the task metric (true
    labels) at the end of this α, of the blended model and of its branches alone (α = 0)."""
    x, y, split = (data.x_val, data.y_val, "val") if data.has_val else (data.x_train, data.y_train, "train")
    metric = primary_metric(data).replace("test_", "")
    blended = scores(y, predict(model, x), data)[metric]
    blend.set_alpha(model, 0.0)
    branches = scores(y, predict(model, x), data)[metric]
    blend.set_alpha(model, alpha)
    loss_key = "val_loss" if "val_loss" in h else "loss"
    return {"alpha": alpha, "epochs": len(h["loss"]), f"best_{loss_key}": min(h[loss_key]),
            f"{split}_{metric}": blended, f"{split}_{metric}_branches_only": branches}


def branch_totals(branches):
    """The parameters of the layers given branches, of their branches, and the share kept."""
    original = sum(b["original_params"] for b in branches.values())
    kept = sum(b["branch_params"] for b in branches.values())
    return {"prunable_params": original, "branch_params": kept, "kept_share": kept / original}


def method_record(s, branches, rows):
    """What run.json records about the α-schedule (besides the settings)."""
    return {"schedule": s.alphas(), "branches": branches, **branch_totals(branches), "per_alpha": rows}


def write_outputs(folder, history, markers, rows, s):
    """Training curves with the α changes marked, and the per-α table (markdown + CSV)."""
    title = f"α-schedule, prune {s.prune}, {s.target} target"
    training_curves(history, folder / "training.png", title=title, markers=markers, color_by="alpha")
    write_table(folder / "alpha", rows, list(rows[0]))
