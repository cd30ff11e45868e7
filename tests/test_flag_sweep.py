"""Every flag of every command refuses an empty, a wrong-type and an out-of-range value: exit 2, one line on
stderr naming the flag, nothing written, no training started (the issue: no ``internal error`` for any input
a user can give through a flag).

The flags are read off the parser that :func:`kcompress.cli.parsers.build_parser` builds from the settings
classes, per command and per ``--method``, so a new flag, method or command is swept without a change here
(a new command fails :func:`test_every_command_has_a_context` until it gets its required context). A flag's
kind comes from its settings field (matched by name and help text), or from argparse's own ``type`` and
``choices`` for the flags the parser adds itself (``--seed``, ``--out``, ``--search``, ...). The values:

- empty: ``""`` for every flag;
- wrong type: ``abc`` for a number or a parsed value, ``1.5`` for an integer, ``42`` for a choice and for
  free text that names something (a file, a layer, a dataset, a method, a host);
- out of range: ``-1`` for every number and parsed value (no count, rate, size or threshold is negative),
  ``nan`` and ``inf`` for every float and parsed value; and where the field's own check sets an upper bound —
  probed on its settings class with ``1.5`` (floats), else 10⁹ — the first value it refuses.

The same settings reach a command through ``--config FILE.yaml``, where YAML gives them types a flag cannot:
:func:`test_bad_config_value_exits_2_with_one_line` gives each settings field, once, a mapping, an empty text
and (a number) ``true``.

Training and exporting are replaced by a tripwire for the module (a ``BaseException``, which no ``except
Exception`` in a tuner's trial loop swallows), so a value that slips through fails its case at once instead of
training: the whole file runs in about 40 s on 2 cores, a third of it training the model directory.
"""
import argparse
import contextlib
import functools
import io
import re
import shutil

import pytest

from kcompress.api import DemoSettings
from kcompress.cli import main as cli_main
from kcompress.cli.main import main
from kcompress.cli.parsers import AUTO, build_parser
from kcompress.core.modelspec import ModelSettings
from kcompress.core.settings import base_type
from kcompress.core.source import Source
from kcompress.deploy.settings import ExportSettings
from kcompress.errors import UsageError
from kcompress.methods import REGISTRY, settings_class
from kcompress.training.config import TrainConfig
from kcompress.tuning.settings import AutoSettings, TuneSettings, Workers

TASK = "all:prune-l0:kappa=0.05"
# What each command needs besides the flag under test ({ref}: a model directory, {out}: a folder in the
# empty working folder); a flag under test that is here replaces its value.
CONTEXT = {
    "train": {"--out": "{out}"},
    "import": {"MODEL": "{ref}/model.keras", "--data": "mnist-sample", "--out": "{out}"},
    "evaluate": {"--from": "{ref}"},
    "export": {"--from": "{ref}", "--out": "{out}"},
    "report": {"DIR": "{ref}", "--out": "{out}"},
    "demo": {"--out": "{out}", "--exported": "{out}-exported"},
    "compress": {"--out": "{out}"},
    "tune": {"--out": "{out}", "--space": "lr=0.01,0.1"},
}  # with --method: also --from {ref}, and METHOD_CONTEXT
METHOD_CONTEXT = {"lc": {"--task": TASK}}
SETTINGS_CONTEXT = {"lc": {"task": TASK}}  # what a method's settings need to validate at all
# Values a flag rightly takes, so they are not swept as wrong: any text names a folder to write or a worker.
ACCEPTED = {
    ("out", "42"): "--out names the folder to write: any text is a path",
    ("exported", "42"): "demo --exported names a folder to write, likewise",
    ("tuner_id", "42"): "--tuner-id is any name a worker goes by",
    ("tensorboard", "42"): "--tensorboard names a folder to write the logs into, likewise",
}


def contexts():
    """``(command, method)`` of every sweep: each command, compress with every method and auto, tune for a
    training search and with every method."""
    for command in build_parser().commands:
        if command == "compress":
            yield from ((command, m) for m in [*REGISTRY, AUTO])
        elif command == "tune":
            yield from ((command, m) for m in [None, *REGISTRY])
        else:
            yield command, None


def _classes(method):
    """The settings classes whose fields become flags, the method's own first."""
    own = [settings_class(method)] if method and method != AUTO else [AutoSettings] if method == AUTO else []
    return own + [TuneSettings, Workers, ExportSettings, Source, ModelSettings, TrainConfig, DemoSettings]


def field_of(action, method):
    """``(settings class, field)`` of a flag (``(None, None)`` for a flag the parser adds itself)."""
    for cls in _classes(method):
        for f in cls.options():
            if f.name == action.dest and (action.help or "").startswith(f.metadata["help"].replace("%", "%%")):
                return cls, f
    return None, None


def _refused(cls, name, text):
    """Whether the settings class's own check refuses ``text`` for field ``name`` (its range, probed)."""
    try:
        cls.from_dict({**SETTINGS_CONTEXT.get(getattr(cls, "NAME", ""), {}), name: text})
    except UsageError:
        return True
    return False


def _takes_int(action):
    try:
        return isinstance(action.type("7"), int)
    except (TypeError, ValueError, argparse.ArgumentTypeError, UsageError):
        return False


def bad_values(action, method):
    """``[(what, text)]``: the values the flag of ``action`` must refuse."""
    cls, field = field_of(action, method)
    if field is None:
        kind = int if action.type and _takes_int(action) else str
        choices, parse = action.choices, None
    else:
        kind, choices, parse = base_type(field.type), field.metadata.get("choices"), field.metadata.get("parse")
    values = [("empty", "")]
    if choices:
        values.append(("wrong type", "42"))
    elif kind is int:
        values += [("wrong type", "abc"), ("wrong type", "1.5"), ("out of range", "-1")]
    elif kind is float:
        values += [("wrong type", "abc")] + [("out of range", v) for v in ("-1", "nan", "inf")]
    elif parse:
        values += [("wrong type", "abc")] + [("out of range", v) for v in ("-1", "nan", "inf")]
    else:
        values.append(("wrong type", "42"))  # free text that names a file, layer, dataset, method or host
    if field is not None and kind in (int, float):
        probes = ("1.5", "1e9") if kind is float else ("1000000000",)
        values += [("above the range", p) for p in probes if _refused(cls, field.name, p)][:1]
    return values


def flags(command, method):
    """The value-taking actions of ``command``'s parser (with ``--method method``)."""
    parser = build_parser(method).commands[command]
    return [a for a in parser.flags.values() if a.nargs != 0 and a.dest != "help"]


def _name(action):
    return action.option_strings[0] if action.option_strings else action.metavar


def cases():
    for command, method in contexts():
        for action in flags(command, method):
            name = _name(action)
            yield pytest.param(command, method, name, id=":".join(filter(None, (command, method, name))))


def argv(command, method, name, value, ref, out, config=None):
    """The command line: the context with ``name`` given ``value`` (replacing the context's own), or with
    ``--config config`` instead of ``name`` (which the command line would otherwise override)."""
    with_method = {"--from": "{ref}", "--method": method, **METHOD_CONTEXT.get(method, {})} if method else {}
    given = {**CONTEXT[command], **with_method}
    if given.get("--space", "").partition("=")[0] == name.lstrip("-").replace("-", "_"):
        given["--space"] = "momentum=0.5,0.9"  # the searched setting is not the flag under test
    if config is None:
        given[name] = value
    else:
        given.pop(name, None)
        given["--config"] = str(config)
    line = [command]
    for key, text in given.items():
        text = text.format(ref=ref, out=out)
        line += [key, text] if key.startswith("--") else [text]
    return line


class WorkStarted(BaseException):
    """Training or exporting began: the value under test was not refused before the work."""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A LeNet-300-100 model directory trained one epoch on the bundled MNIST sample."""
    ref = tmp_path_factory.mktemp("sweep-ref") / "ref"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", "--data", "mnist-sample", "--epochs", "1", "--model", "lenet300", "--out", str(ref)])
    assert code == 0
    return ref


@pytest.fixture(scope="module")
def tripwire(model_dir, tmp_path_factory):
    """An empty working folder as the current one, and training and exporting that raise :class:`WorkStarted`."""
    from kcompress.backend import keras
    from kcompress.deploy import check

    def refuse(*args, **kwargs):
        raise WorkStarted("training or exporting started: the value was not refused")

    work = tmp_path_factory.mktemp("sweep-work")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(keras.Model, "fit", refuse)
        mp.setattr(check, "exports", refuse)
        # each parser built once: building it is half of what a refused command costs (~5 of 10 ms, ~2,000
        # times here), and argparse leaves a parser as it was after parsing
        mp.setattr(cli_main, "build_parser", functools.lru_cache(maxsize=None)(build_parser))
        mp.chdir(work)
        yield work


def _names_flag(line, name, value):
    """Whether the message names the flag (a positional: its metavar, or the value it was given)."""
    if name.startswith("--"):
        return re.search(re.escape(name) + r"(?![\w-])", line) is not None
    return name in line or bool(value) and value in line


def refused(line, work, capsys, names):
    """``None`` if the command ``line`` exits 2 with one line naming something in ``names`` (flags, metavars,
    values or config keys) and leaves ``work`` empty, else what it did (``work`` is emptied for the next)."""
    try:
        code = main(line)
    except WorkStarted as e:
        code = str(e)
    err = capsys.readouterr().err.strip().splitlines()
    left = sorted(p.name for p in work.iterdir())
    for p in work.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    if code == 2 and len(err) == 1 and err[0].startswith("kcompress: error: ") and not left:
        if any(_names_flag(err[0], name, value) for name, value in names):
            return None
    return f"exit {code}, stderr {err[-3:]}, left {left} ({' '.join(line)})"


def test_every_command_has_a_context():
    assert set(build_parser().commands) == set(CONTEXT)


@pytest.mark.parametrize("command, method, name", list(cases()))
def test_bad_value_exits_2_with_one_line(command, method, name, model_dir, tripwire, capsys):
    action = next(a for a in flags(command, method) if _name(a) == name)
    failures = []
    for what, value in bad_values(action, method):
        if (action.dest, value) in ACCEPTED:
            continue  # a value the flag rightly takes: see ACCEPTED
        line = argv(command, method, name, value, model_dir, tripwire / "out")
        if outcome := refused(line, tripwire, capsys, [(name, value)]):
            failures.append(f"{what} {value!r}: {outcome}")
    assert not failures, f"{command} {method or ''} {name}:\n" + "\n".join(failures)


def settings_fields():
    """``(command, method, flag)`` of every settings field once, in the first context whose parser has it."""
    seen = set()
    for command, method in contexts():
        for action in flags(command, method):
            cls, field = field_of(action, method)
            if field is not None and (cls, field.name) not in seen:
                seen.add((cls, field.name))
                yield pytest.param(command, method, _name(action), id=f"{cls.__name__}.{field.name}")


@pytest.mark.parametrize("command, method, name", list(settings_fields()))
def test_bad_config_value_exits_2_with_one_line(command, method, name, model_dir, tripwire, capsys, tmp_path):
    _, field = field_of(next(a for a in flags(command, method) if _name(a) == name), method)
    values = [("a mapping", "{a: 1}"), ("empty", "''")]
    if base_type(field.type) in (int, float):
        values.append(("a boolean for a number", "true"))
    failures = []
    for what, value in values:
        config = tmp_path / "config.yaml"
        config.write_text(f"{field.name}: {value}\n")
        line = argv(command, method, name, None, model_dir, tripwire / "out", config=config)
        # the message may name the config's key instead of the flag
        if outcome := refused(line, tripwire, capsys, [(name, None), (field.name, field.name)]):
            failures.append(f"{what} {value}: {outcome}")
    assert not failures, f"{command} {method or ''} --config {field.name}:\n" + "\n".join(failures)
