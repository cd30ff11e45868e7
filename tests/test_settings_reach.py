"""Over the whole method registry: every declared setting given on the command line reaches the objects
the method's stages and schedules are built from, and every shared check refuses a bad value for every
method that has the setting."""
from types import SimpleNamespace

import pytest

from kcompress.core.settings import base_type
from kcompress.errors import UsageError
from kcompress.methods import REGISTRY, settings_class
from kcompress.methods.base import FinetuneSettings, finetune_config
from kcompress.training.config import TrainConfig

BASE = {"lc": ["--task", "all:prune-l0:kappa=0.05"],
        # --patience with a polynomial schedule is refused on purpose (it could restore unpruned weights)
        "prune": ["--schedule", "constant"], "prune+cluster": ["--schedule", "constant"]}
# command-line text of the fields whose value is not a plain number or choice
TEXT = {"layers": "dense_1", "batch_size": "32", "keep_units": "dense_1=7", "m_by_n": "2:4", "alpha_list": "0.5,0.2",
        "mu_list": "1e-4,1e-3", "task": "all:quant:k=4", "sweep": "kappa=0.02", "mu": "balanced",
        "gate_init_spread": "0.5"}
REFERENCE = SimpleNamespace(train=TrainConfig())
# What a stage deliberately does not take from the settings, by stage: the clustering stage of prune+cluster
# trains with the clustering recipe (Adam, CLUSTER_RECIPES) for --cluster-epochs; the pruner's gate phase
# trains --max-epochs with --gate-lr-schedule and no early stopping.
CLUSTER_RECIPE = ("optimizer", "lr", "momentum", "epochs", "lr_schedule", "gamma", "step_size", "patience")
GATE_PHASE = ("epochs", "lr_schedule", "patience")


def _stages(name, s):
    """``[(object, {setting: its name there}, settings it withholds)]``: what the method's code builds its work
    from, made by the same functions the method's ``run`` calls."""
    if name == "prune+cluster":
        prune, cluster = s.stages()
        return [(prune, {}, ()), (cluster, {"cluster_epochs": "epochs"}, CLUSTER_RECIPE)]
    if name == "cluster":
        return [(s.for_task("classification"), {}, ())]
    if name == "lc":
        return [(s, {}, ()), (s.schedule(), {}, ())]
    if name == "pruner":
        from kcompress.methods.pruner.method import gate_phase_config, lambda_mu_schedule

        return [(lambda_mu_schedule(s).settings, {}, ()),
                (gate_phase_config(REFERENCE, s), {"max_epochs": "epochs", "gate_lr_schedule": "lr_schedule"},
                 GATE_PHASE),
                (finetune_config(REFERENCE, s), {}, ())]
    return [(s, {}, ())]


def _settings(name, argv):
    from kcompress.cli.main import parse
    from kcompress.core.settings import expand

    command = ["compress", "--from", "m", "--method", name, "--out", "x", *BASE.get(name, []), *argv]
    values = {k: v for k, v in parse(command)[1].items() if k not in ("from_dir", "method", "out")}
    (_, settings), = expand(settings_class(name), values)
    return settings


def _candidates(field, tmp_path):
    """Command-line texts of values other than the default, most likely valid first."""
    if field.name == "tasks_file":
        path = tmp_path / "tasks.yaml"
        path.write_text("- all:prune-l0:kappa=0.1\n")
        return [str(path)]
    if field.name in TEXT:
        return [TEXT[field.name]]
    if field.metadata.get("choices"):
        return [c for c in field.metadata["choices"] if c != field.default]
    d, kind = field.default, base_type(field.type)  # Optional[int] -> int
    if d is None:
        return ["3"] if kind is int else ["0.5"]
    if kind is int:
        return [str(d + 1), str(d * 2 + 3)]
    return [repr(d * 2), repr(d / 2)]


def _given(name, field, tmp_path):
    """Settings of method ``name`` with a value other than the default for ``field``, given on the command line."""
    flag = "--" + field.name.replace("_", "-")
    if field.type is bool:
        return _settings(name, [("--no-" + flag[2:]) if field.default else flag])
    for text in _candidates(field, tmp_path):
        try:
            return _settings(name, [flag, text])
        except UsageError:
            continue
    pytest.fail(f"{name}: no valid value other than the default for {flag}")


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_setting_given_on_the_command_line_reaches_the_stages(name, tmp_path):
    cls = settings_class(name)
    for field in cls.options():
        if not field.metadata.get("cli", True):
            continue
        s = _given(name, field, tmp_path)
        value = getattr(s, field.name)
        assert value != field.default, (name, field.name)
        reached = False
        for stage, renamed, withheld in _stages(name, s):
            there = renamed.get(field.name, field.name)
            if hasattr(stage, there) and field.name not in withheld:
                assert getattr(stage, there) == value, f"{name}: --{field.name} did not reach {type(stage).__name__}"
                reached = True
        assert reached, f"{name}: --{field.name} reaches none of the method's stages"


# A bad value of every setting the shared settings check; the others are checked by their choices or parser,
# or against the model at run time (--layers).
BAD = {"lr": "-1", "momentum": "5", "epochs": "-1", "gamma": "0", "step_size": "0", "patience": "-3", "curve_every": "-2"}
UNCHECKED = {"layers", "batch_size", "optimizer", "lr_schedule"}


def test_the_shared_checks_cover_every_shared_setting():
    assert set(FinetuneSettings.names()) == set(BAD) | UNCHECKED
    for field, text in BAD.items():
        with pytest.raises(UsageError, match=f"--{field.replace('_', '-')}"):
            FinetuneSettings.from_dict({field: text})


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_shared_check_applies_to_every_method(name):
    for field, text in BAD.items():
        if field in settings_class(name).names():
            flag = f"--{field.replace('_', '-')}"
            with pytest.raises(UsageError, match=flag):
                _settings(name, [flag, text])


def test_prune_cluster_codebook_reaches_the_clustering_stage():
    """The bug that started this file: --codebook symmetric reached the clustering stage as auto."""
    _, cluster = _settings("prune+cluster", ["--codebook", "symmetric"]).stages()
    assert cluster.codebook == "symmetric"
