"""Search spaces: what a ``tune`` run may vary, parsed from ``--space`` strings or a YAML file.

One ``--space`` item names one setting and its candidates:

- ``lr=1e-5,1e-4,1e-3``: a choice (a single value ``loss=mse`` fixes the setting);
- ``momentum=0.5:0.99``: a range, sampled uniformly; ``lr=1e-5:1e-1:log`` samples it on a
  log scale; ``momentum=0.5:0.9:0.1`` steps it (ranges of integer settings step by 1);
- ``hidden=300-100,500-150``: choices of hidden widths joined by ``-`` (``none`` = no layer).

Only numbers make a range: ``task=all:prune-l0:kappa=0.05`` fixes a text setting that holds
colons (a method setting whose first part is not a number is a text value, not a range).

A YAML file maps setting names to a value, a list (choice) or a range string, e.g.
``{lr: [1e-4, 1e-3], momentum: "0.5:0.99", loss: mse}``; a list item is one value even when it
holds commas (``task: ["dense_1,dense_2:prune-l0:kappa=0.1"]``). :func:`parse_space` returns an
ordered ``{name: Param}``; :func:`hyperparameters` turns it into Keras Tuner's
``HyperParameters``. Values are typed here (int, float, or text) so that trials get the
same values back; :func:`trial_value` undoes the text form that mixed choices need
(``batch_size=64,full``), because a Keras Tuner choice holds values of one type.
"""
import itertools
from dataclasses import dataclass

from kcompress.core.yamlfile import read_yaml
from kcompress.errors import UsageError, require

INT_SETTINGS = ("epochs", "step_size", "patience", "plateau_patience", "batch_size")
FLOAT_SETTINGS = ("lr", "momentum", "gamma", "lse_temperature")
TEXT_ALLOWED = {"batch_size": ("full",)}  # the one text value a numeric setting takes
SAMPLINGS = ("linear", "log")


@dataclass(frozen=True)
class Param:
    """One searched setting: a list of ``choices``, or a range ``low..high`` (optional step)."""

    name: str
    choices: tuple = ()
    low: float = None
    high: float = None
    sampling: str = "linear"
    step: float = None

    @property
    def is_range(self):
        return self.low is not None

    @property
    def integer(self):
        return self.name in INT_SETTINGS

    def grid_values(self):
        """Every value a grid search visits (ranges need a step, or integer bounds)."""
        if not self.is_range:
            return list(self.choices)
        require(self.step is not None or self.integer,
                f"--space {self.name}: a grid search needs a list or a stepped range "
                f"(e.g. {self.name}={_fmt(self.low)}:{_fmt(self.high)}:STEP)")
        step, values, v = self.step or 1, [], self.low
        while v <= self.high + 1e-12 * abs(self.high):
            values.append(int(v) if self.integer else round(v, 12))
            v = v * step if self.sampling == "log" else v + step
        return values


def _fmt(v):
    return f"{v:g}" if isinstance(v, float) else str(v)


def parse_value(text):
    """``"64"`` -> 64, ``"1e-3"`` -> 0.001, ``"true"`` -> True, ``"300-100"`` -> ``"300,100"``, else text."""
    text = str(text).strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if all(part.isdigit() for part in text.split("-")):  # hidden widths 300-100
        return text.replace("-", ",")
    return text


def parse_item(item):
    """One ``NAME=VALUES`` string -> :class:`Param` (exit 2 with the reason if malformed)."""
    require("=" in item, f"--space {item!r}: expected NAME=VALUES, e.g. lr=1e-4,1e-3 or momentum=0.5:0.99")
    name, _, text = item.partition("=")
    name = name.strip().lstrip("-").replace("-", "_")
    require(name.isidentifier(), f"--space {item!r}: {name!r} is not a setting name")
    require(text.strip(), f"--space {item!r}: no values after '='")
    return _parse_values(name, text.strip(), item)


def _parse_values(name, text, where):
    if _is_range(name, text):
        return _parse_range(name, text, where)
    parts = [p.strip() for p in text.split(",")]
    require(all(parts), f"--space {where!r}: empty value in the list")
    return _choices(name, [parse_value(p) for p in parts], where)


def _is_range(name, text):
    """``LOW:HIGH[...]``: always for a numeric training setting (so that ``lr=abc:1`` is reported
    as a bad range), else only when LOW is a number (``task=all:prune-l0:kappa=0.05`` is text)."""
    if ":" not in text or "," in text:
        return False
    if name in INT_SETTINGS + FLOAT_SETTINGS:
        return True
    return not isinstance(parse_value(text.split(":")[0]), str)


def _choices(name, values, where):
    require(len(set(map(repr, values))) == len(values), f"--space {where!r}: repeated values")
    _check_numbers(name, values, where)
    return Param(name, choices=tuple(values))


def _check_numbers(name, values, where):
    """Exit 2 if a numeric training setting is given a value that is not a number."""
    if name not in INT_SETTINGS + FLOAT_SETTINGS:
        return  # text settings (loss=mse,lse) and method settings, which their runner checks
    whole = name in INT_SETTINGS
    bad = [v for v in values if v not in TEXT_ALLOWED.get(name, ())
           and (isinstance(v, bool) or not isinstance(v, int if whole else (int, float)))]
    require(not bad, f"--space {where!r}: {name} takes {'whole numbers' if whole else 'numbers'}, "
                     f"not {', '.join(map(str, bad))}")


def _parse_range(name, text, where):
    parts = text.split(":")
    require(2 <= len(parts) <= 4, f"--space {where!r}: a range is LOW:HIGH[:log][:STEP]")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise UsageError(f"--space {where!r}: range bounds must be numbers") from None
    sampling, step = "linear", None
    for extra in parts[2:]:
        if extra in SAMPLINGS:
            sampling = extra
        else:
            try:
                step = float(extra)
            except ValueError:
                raise UsageError(f"--space {where!r}: {extra!r} is neither a sampling (linear, log) nor a step") from None
    require(low < high, f"--space {where!r}: LOW must be below HIGH")
    require(sampling != "log" or low > 0, f"--space {where!r}: a log range needs LOW > 0")
    require(step is None or step > (1 if sampling == "log" else 0),
            f"--space {where!r}: the step must be positive (above 1 for a log range: a factor)")
    if name in INT_SETTINGS:
        require(low.is_integer() and high.is_integer() and (step is None or step.is_integer()),
                f"--space {where!r}: {name} takes whole numbers")
        low, high, step = int(low), int(high), (None if step is None else int(step))
    return Param(name, low=low, high=high, sampling=sampling, step=step)


def read_space_file(path):
    """The settings of a YAML space file as :class:`Param` objects (a list item is one value)."""
    conf = read_yaml(path, f"--space {path}")
    require(isinstance(conf, dict) and conf, f"--space {path}: expected a mapping of settings to values")
    params = []
    for key, value in conf.items():
        name, where = str(key).replace("-", "_"), f"{path}: {key}"
        require(name.isidentifier(), f"--space {where!r}: {name!r} is not a setting name")
        require(not isinstance(value, dict), f"--space {path}: {key}: give a list or a range string like '0.5:0.99'")
        if isinstance(value, (list, tuple)):
            require(value and all(str(v).strip() for v in value), f"--space {path}: {key} has an empty value")
            params.append(_choices(name, [parse_value(v) for v in value], where))
        else:
            params.append(_parse_values(name, str(value).strip(), where))
    return params


def parse_space(items):
    """``--space`` items (strings, or YAML file paths) -> ordered ``{name: Param}``."""
    require(items, "--space is required: e.g. --space lr=1e-3,1e-2 --space momentum=0.5:0.99")
    space = {}
    for item in items:
        from_file = str(item).endswith((".yaml", ".yml")) and "=" not in str(item)
        for param in read_space_file(item) if from_file else [parse_item(str(item))]:
            require(param.name not in space, f"--space: {param.name} is given twice")
            space[param.name] = param
    return space


def check_names(space, known, context):
    """Exit 2 if a searched setting is not one of ``known``."""
    unknown = [n for n in space if n not in known]
    require(not unknown, f"--space: {', '.join(unknown)} cannot be searched {context} "
                         f"(searchable: {', '.join(sorted(known))})")


def searched(space):
    """The names that really vary (more than one candidate)."""
    return [n for n, p in space.items() if p.is_range or len(p.choices) > 1]


def grid_size(space):
    size = 1
    for p in space.values():
        size *= len(p.grid_values())
    return size


def grid(space):
    """Every combination of a grid search, in order (the first setting varies slowest)."""
    axes = [one_type(p.grid_values()) for p in space.values()]
    return [dict(zip(space, combo)) for combo in itertools.product(*axes)]


def hyperparameters(space):
    """Keras Tuner ``HyperParameters`` for ``space`` (in order; the first choice is the default)."""
    import keras_tuner as kt  # Keras Tuner loads TensorFlow

    hp = kt.HyperParameters()
    for p in space.values():
        add_param(hp, p)
    return hp


def add_param(hp, p, name=None):
    """Declare :class:`Param` ``p`` in Keras Tuner's ``hp`` (as ``name``, default ``p.name``)."""
    name = name or p.name
    if p.is_range and p.integer:
        hp.Int(name, p.low, p.high, step=p.step, sampling=p.sampling)
    elif p.is_range:
        hp.Float(name, p.low, p.high, step=p.step, sampling=p.sampling)
    elif len(p.choices) == 1:
        hp.Fixed(name, p.choices[0])
    else:
        hp.Choice(name, one_type(p.choices))


def one_type(values):
    """A Keras Tuner choice holds one type: mixed lists become text (see :func:`trial_value`)."""
    kinds = {type(v) for v in values}
    if len(kinds) == 1:
        return list(values)
    if kinds == {int, float}:
        return [float(v) for v in values]
    return [str(v) for v in values]


def trial_value(value):
    """A trial's value as kcompress takes it (``"64"`` from a mixed choice -> 64)."""
    return parse_value(value) if isinstance(value, str) else value
