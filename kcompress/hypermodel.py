"""Trial runners: what one tuning trial does with its settings, as Keras Tuner's "hypermodel".

A runner merges a trial's values into the search's base settings, trains (``TrainTrial``:
builds a zoo model and trains it with :func:`kcompress.training.fit`) or compresses
(``CompressTrial``: one :func:`kcompress.api.compress_one` run from a reference model), writes
the result as a model directory ``<trial folder>/model`` and returns the trial's metrics:
the test metrics of ``evaluate_model`` plus exact validation scores and ``val_loss``.
Runners also know how to state a trial's settings as a ready command and a ``--config`` file.
"""
import argparse
import time
from dataclasses import fields, replace
from pathlib import Path

from kcompress.backend import set_seed
from kcompress.data import default_val_split, load_dataset
from kcompress.errors import require
from kcompress.modeldir import RUN_FILE, load_model, run_record, save_model, write_json
from kcompress.objectives import evaluate_model, predict, scores
from kcompress.training import TrainConfig, compile_model, fit
from kcompress.zoo import build_model, parse_hidden

MODEL_DIR = "model"
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name not in ("verbose", "monitor"))
BUILD_KEYS = ("hidden", "activation")
OBJECTIVES = ("val_loss", "val_error", "test_error", "max_error", "mae")


def objective_key(name, task):
    """The metric key behind ``--objective name``: ``val_error`` is ε on validation for regression."""
    name = name or ("val_error" if task == "classification" else "max_error")
    require(name in OBJECTIVES, f"unknown --objective {name!r} (one of {', '.join(OBJECTIVES)})")
    if task == "regression":
        return {"val_error": "val_max_error", "test_error": "max_error"}.get(name, name)
    require(name not in ("max_error", "mae"), f"--objective {name} is for regression; use val_error or test_error")
    return name


def trial_scores(model, data, cfg):
    """Test/train metrics plus exact validation scores and the validation loss of ``model``."""
    metrics = evaluate_model(model, data)
    if data.has_val:
        metrics.update(scores(data.y_val, predict(model, data.x_val), data, "val_"))
        if not model.optimizer:
            compile_model(model, data, cfg)
        logs = model.evaluate(data.x_val, data.y_val, batch_size=1024, verbose=0, return_dict=True)
        metrics["val_loss"] = float(logs["loss"])
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def _flag(key, value):
    """``--key value`` as the CLI spells it (``nesterov False`` is ``--no-nesterov``)."""
    if key == "nesterov":
        return [] if value else ["--no-nesterov"]
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return [f"--{key.replace('_', '-')}", str(value)]


class TrainTrial:
    """Train a zoo model: ``base`` holds model/data/val_split/hidden/activation and train flags."""

    kind = "train"

    def __init__(self, base, seed=0):
        self.base = dict(base)
        if self.base.get("val_split") is None:  # as train: an index must hold every key
            self.base["val_split"] = default_val_split(self.base["data"])
        self.seed = seed
        self.data = load_dataset(self.base["data"], self.base["val_split"], seed)
        self.searchable = TRAIN_KEYS + BUILD_KEYS

    @property
    def task(self):
        return self.data.task

    def settings(self, values):
        s = {**self.base, **values}
        s["hidden"] = parse_hidden(s.get("hidden"))
        return s

    def check(self, values):
        """Exit 2 if ``values`` (one candidate per setting) cannot be trained."""
        s = self.settings(values)
        TrainConfig.from_dict(s).validate()
        build_model(s["model"], self.data.input_shape, self.data.output_dim, s["hidden"], s["activation"])

    def run(self, values, folder, warm_start=None, initial_epoch=0):
        """Train one trial into ``folder/model``; ``warm_start`` is a trial folder to continue."""
        s = self.settings(values)
        cfg = replace(TrainConfig.from_dict(s), verbose=0).validate()
        set_seed(self.seed)
        net = build_model(s["model"], self.data.input_shape, self.data.output_dim, s["hidden"], s["activation"])
        if warm_start:
            net.set_weights(load_model(Path(warm_start) / MODEL_DIR).get_weights())
        start = time.perf_counter()
        history = fit(net, self.data, cfg, backup_dir=Path(folder) / "backup", initial_epoch=initial_epoch)
        seconds = time.perf_counter() - start
        metrics = trial_scores(net, self.data, cfg)
        out = Path(folder) / MODEL_DIR
        out.mkdir(parents=True, exist_ok=True)
        save_model(net, out)
        setup = {k: s[k] for k in ("model", "data", "hidden", "activation", "val_split")}
        record = run_record("train", {**setup, **cfg.to_dict()}, seed=self.seed, dataset=self.data.describe(),
                            parent=None, history=history, metrics=metrics, train_seconds=seconds)
        write_json(out / RUN_FILE, record)
        return {**metrics, "seconds": seconds}

    def config(self, values):
        """The trial's settings as a ``train --config`` mapping."""
        s = self.settings(values)
        keep = ("model", "data", "hidden", "activation", "val_split") + TRAIN_KEYS
        conf = {k: s[k] for k in keep if s.get(k) is not None}
        if "hidden" in conf:
            conf["hidden"] = ",".join(map(str, conf["hidden"])) or "none"
        return conf

    def command(self, values, out):
        """A ready ``train`` command: the trial's settings where they differ from train's defaults."""
        defaults = {**TrainConfig().to_dict(), "activation": "relu", "val_split": 0.1}
        conf = self.config(values)
        args = ["python", "cli.py", "train"]
        for key, value in conf.items():
            if key in ("model", "data") or defaults.get(key, object()) != value:
                args += _flag(key, value)
        return args + ["--seed", str(self.seed), "--out", str(out)]


def method_defaults(mod):
    """``{dest: default}`` of a compression method's own flags."""
    parser = argparse.ArgumentParser(add_help=False)
    mod.add_arguments(parser)
    return {a.dest: a.default for a in parser._actions}


class CompressTrial:
    """Compress the reference in ``from_dir`` with ``method``; the trial's values are its settings."""

    kind = "compress"

    def __init__(self, from_dir, method, seed=0):
        from kcompress.api import load_reference
        from kcompress.methods import get_method
        from kcompress.methods.base import FINETUNE_KEYS

        self.mod = get_method(method)
        self.reference = load_reference(from_dir)
        self.seed = seed
        self.base = {**{k: None for k in FINETUNE_KEYS}, "layers": None, **method_defaults(self.mod)}
        self.searchable = tuple(self.base)

    @property
    def data(self):
        return self.reference.data

    @property
    def task(self):
        return self.data.task

    def settings(self, values):
        return {**self.base, **values}

    def check(self, values):
        """Exit 2 early for settings that cannot run: fine-tuning values, and the method's own
        (through its optional ``check_settings``, as ``compress`` does)."""
        from kcompress.methods.base import finetune_config

        finetune_config(self.reference, self.settings(values))
        getattr(self.mod, "check_settings", lambda s: None)(self.settings(values))

    def run(self, values, folder, warm_start=None, initial_epoch=0):
        """Compress into ``folder/model`` (``warm_start`` is not supported: compression restarts)."""
        from kcompress.api import compress_one
        from kcompress.methods.base import finetune_config

        out = Path(folder) / MODEL_DIR
        out.mkdir(parents=True, exist_ok=True)
        record = compress_one(self.reference, self.mod, self.settings(values), out, self.seed, label=Path(folder).name)
        model = load_model(out)
        metrics = trial_scores(model, self.data, finetune_config(self.reference, self.settings(values)))
        total = record["compression"]["total"]
        return {**metrics, "bits_ratio": float(total["bits_ratio"]), "seconds": float(record["compress_seconds"])}

    def config(self, values):
        conf = {"from_dir": str(self.reference.folder), "method": self.mod.NAME, **self.settings(values)}
        return {k: v for k, v in conf.items() if v is not None}

    def command(self, values, out):
        conf = self.config(values)
        args = ["python", "cli.py", "compress", "--from", conf.pop("from_dir"), "--method", conf.pop("method")]
        for key, value in conf.items():
            args += _flag(key, value)
        return args + ["--seed", str(self.seed), "--out", str(out)]
