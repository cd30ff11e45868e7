"""Trial runners: what one tuning trial does with its values.

A runner merges a trial's values into the search's base settings (typed settings: the defaults
come from :class:`~kcompress.training.config.TrainConfig` and the method's settings class),
then trains (:class:`TrainTrial`) or compresses (:class:`CompressTrial`) through the same
pipeline as ``train`` and ``compress`` (:mod:`kcompress.pipeline`), into the model directory
``<trial folder>/model`` with its plots, and returns the trial's metrics: the test metrics plus
exact validation scores and ``val_loss``. The model is handed over in memory. Runners also
state a trial's settings as a ready command and a ``--config`` file.
"""
from pathlib import Path

from kcompress import pipeline
from kcompress.core.data import load_dataset
from kcompress.core.modeldir import load_model, staged_dir
from kcompress.core.modelspec import ModelSettings
from kcompress.core.objectives import predict, scores
from kcompress.core.settings import flag_name
from kcompress.errors import require
from kcompress.methods import settings_class
from kcompress.methods.base import finetune_config, target_layers
from kcompress.training.config import TrainConfig
from kcompress.training.loop import compile_model

MODEL_DIR = "model"
OBJECTIVES = ("val_loss", "val_error", "test_error", "max_error", "mae")


def objective_key(name, task):
    """The metric key behind ``--objective name``: ``val_error`` is ε on validation for regression."""
    name = name or ("val_error" if task == "classification" else "max_error")
    require(name in OBJECTIVES, f"unknown --objective {name!r} (one of {', '.join(OBJECTIVES)})")
    if task == "regression":
        return {"val_error": "val_max_error", "test_error": "max_error"}.get(name, name)
    require(name not in ("max_error", "mae"), f"--objective {name} is for regression; use val_error or test_error")
    return name


def trial_scores(model, data, cfg, metrics):
    """``metrics`` (test/train) plus exact validation scores and the validation loss of ``model``."""
    metrics = dict(metrics)
    if data.has_val:
        metrics.update(scores(data.y_val, predict(model, data.x_val), data, "val_"))
        compile_model(model, data, cfg)
        logs = model.evaluate(data.x_val, data.y_val, batch_size=1024, verbose=0, return_dict=True)
        metrics["val_loss"] = float(logs["loss"])
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def command_args(conf, defaults):
    """``--flag value`` pairs of ``conf`` where it differs from ``defaults``; booleans as
    ``--flag`` / ``--no-flag``, lists as repeated flags or comma lists, as the CLI reads them."""
    args = []
    for key, value in conf.items():
        if value is None or value in ((), [], "") or (key in defaults and defaults[key] == value):
            continue
        if isinstance(value, bool):
            args.append(flag_name(key) if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)) and key == "task":
            for item in value:
                args += [flag_name(key), str(item)]
        else:
            text = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
            args += [flag_name(key), text]
    return args


class TrainTrial:
    """Train a zoo model: the base settings are ``train``'s flags; values override them."""

    kind = "train"
    budget = "epochs"
    resumable = True

    def __init__(self, base, seed=0):
        names = set(ModelSettings.names())
        self.setup = ModelSettings.from_dict({k: v for k, v in base.items() if k in names})
        self.base = TrainConfig.from_dict({k: v for k, v in base.items() if k not in names})
        self.seed = seed
        self.data = load_dataset(self.setup.data, self.setup.split, seed, self.setup.strict_keys)
        self.searchable = tuple(n for n in TrainConfig.names() if n not in ("verbose", "monitor")) + ("hidden",
                                                                                                        "activation")

    @property
    def task(self):
        return self.data.task

    def settings(self, values):
        """``(ModelSettings, TrainConfig)`` of a trial (exit 2 if the values are unusable)."""
        build = {k: v for k, v in values.items() if k in ModelSettings.names()}
        train = {k: v for k, v in values.items() if k not in build}
        return (ModelSettings.from_dict({**self.setup.to_dict(), **build}),
                TrainConfig.from_dict({**self.base.to_dict(), **train}))

    def check(self, values):
        """Exit 2 if ``values`` (one candidate per setting) cannot be trained."""
        self.settings(values)

    def max_budget(self):
        """The most epochs Hyperband gives a trial: the base setting's."""
        return self.base.epochs

    def run(self, values, folder, warm_start=None):
        """Train one trial into ``folder/model``; ``warm_start`` is a trial folder to continue."""
        setup, cfg = self.settings(values)
        weights = load_model(Path(warm_start) / MODEL_DIR).get_weights() if warm_start else None
        with staged_dir(Path(folder) / MODEL_DIR, overwrite=True) as tmp:
            model, record = pipeline.train_model(setup, cfg.replace(verbose=0), self.seed, self.data, tmp,
                                                 backup_dir=Path(folder) / "backup", initial_weights=weights)
        return {**trial_scores(model, self.data, cfg, record.metrics), "seconds": record.train_seconds}

    def config(self, values):
        """The trial's settings as a ``train --config`` mapping."""
        setup, cfg = self.settings(values)
        conf = {**setup.to_dict(), **cfg.to_dict()}
        conf.pop("verbose")
        if conf.get("hidden") is not None:
            conf["hidden"] = ",".join(map(str, conf["hidden"])) or "none"
        return {k: v for k, v in conf.items() if v is not None}

    def command(self, values, out):
        """A ready ``train`` command: the trial's settings where they differ from train's defaults."""
        defaults = {**ModelSettings.defaults(), **TrainConfig.defaults()}
        defaults.pop("data")
        args = ["kcompress", "train"] + command_args(self.config(values), defaults)
        return args + ["--seed", str(self.seed), "--out", str(out)]


class ReferenceTrial:
    """A runner whose trials compress ``self.reference``: its data and task are the reference's."""

    reference = None

    @property
    def data(self):
        return self.reference.data

    @property
    def task(self):
        return self.data.task


class CompressTrial(ReferenceTrial):
    """Compress the reference in ``from_dir`` with ``method``; the trial's values are its settings."""

    kind = "compress"
    resumable = False

    def __init__(self, from_dir, method, seed=0, base=None, first=None, source=None):
        """``first``: one candidate of each searched setting, so that the fixed settings are checked
        (exit 2) before the reference loads, also when a required one is searched (``--space task=...``);
        ``source``: the reference's data, loss and metric (:class:`~kcompress.core.source.Source` fields)."""
        self.cls = settings_class(method)
        self.base = dict(base or {})
        known = set(self.cls.names())  # other names: check_names reports them
        self.first = {k: v for k, v in (first or {}).items() if k in known}
        self.settings(self.first)
        self.reference = pipeline.load_reference(from_dir, **(source or {}))
        self.seed = seed
        self.budget = self.cls.BUDGET
        self.searchable = self.cls.names()

    def settings(self, values):
        return self.cls.from_dict({**self.base, **values})

    def check(self, values):
        """Exit 2 early for settings that cannot run: the values, and ``--layers`` against the reference's
        layers (a method checks them only when it runs: inside the search, with its folder made)."""
        settings = self.settings(values)
        if settings.layers:
            target_layers(self.reference.model, settings.layers)

    def max_budget(self):
        """The most Hyperband gives a trial of the method's budget setting (epochs, μ steps, ...)."""
        require(self.budget, f"--search hyperband: --method {self.cls.NAME} has no epoch-like budget to scale")
        return getattr(self.settings({k: v for k, v in self.first.items() if k != self.budget}), self.budget) or 30

    def run(self, values, folder):
        """Compress into ``folder/model``; the compressed model is scored in memory."""
        settings = self.settings(values)
        with staged_dir(Path(folder) / MODEL_DIR, overwrite=True) as tmp:
            record, model = pipeline.compress_one(self.reference, settings, tmp, self.seed, label=Path(folder).name)
        cfg = finetune_config(self.reference, settings)
        return {**trial_scores(model, self.data, cfg, record.metrics),
                "bits_ratio": float(record.total_compression["bits_ratio"]), "seconds": float(record.compress_seconds)}

    def config(self, values):
        """The trial's settings as a ``compress --config`` file: it names the reference and method too."""
        source = self.reference.from_args()
        conf = {k[2:]: v for k, v in zip(source[::2], source[1::2])}
        conf["method"] = self.cls.NAME
        conf.update({k: v for k, v in self.settings(values).to_dict().items() if v is not None})
        return conf

    def command(self, values, out):
        conf = self.config(values)
        args = ["kcompress", "compress", *self.reference.from_args(), "--method", conf.pop("method")]
        conf = {k: v for k, v in conf.items() if f"--{k}" not in args}
        return args + command_args(conf, self.cls.defaults()) + ["--seed", str(self.seed), "--out", str(out)]
