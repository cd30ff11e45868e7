"""Typed settings: frozen dataclasses that hold defaults, validation, help and sweep axes.

Every group of settings — training (:class:`~kcompress.training.config.TrainConfig`) and each
compression method's (``methods/<method>/settings.py``) — is a dataclass whose fields are
declared with :func:`option`: the default, the help text, the allowed choices and whether a
sweep may give the field several values. The command line builds its flags from them
(:mod:`kcompress.cli.flags`), the tuner reads its defaults and searchable names from them, and
``run.json`` records them with :meth:`Settings.to_dict`. This module imports nothing heavy:
``kcompress --help`` builds every flag from it without starting TensorFlow.
"""
import dataclasses
import itertools
import math
import types
import typing

from kcompress.errors import UsageError, require


def option(default, help, *, choices=None, sweep=False, cli=True, metavar=None, parse=None, repeat=False):
    """A settings field: ``default``, ``help`` for ``--help``, ``choices`` (a tuple), ``sweep``
    (a sweep or a search may give it several values), ``cli`` (False: not a command-line flag),
    ``parse`` (a function from the command-line text to the value, for non-scalar fields),
    ``repeat`` (a tuple field whose flag may be given several times, each adding one item)."""
    meta = dict(help=help, choices=choices, sweep=sweep, cli=cli, metavar=metavar, parse=parse, repeat=repeat)
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=meta)


def flag_name(name):
    """``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def base_type(annotation):
    """``int`` for ``int``, ``Optional[int]`` and ``int | None``; else the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def convert(field, value):
    """``value`` (from a flag, a YAML file or Python) as the type of ``field`` (exit 2 if it is not)."""
    if value is None:
        return None
    kind, flag = base_type(field.type), flag_name(field.name)
    parse = field.metadata.get("parse")
    refuse_blank(field.name, value)  # before a parser reads "" as "none" (--hidden) or "unset" (--mu-list)
    try:
        if parse:
            return parse(value)
        if kind is bool:
            return _to_bool(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        if kind in (int, float) and isinstance(value, bool):  # a config's `epochs: yes` is no count
            raise TypeError
        if kind is str and isinstance(value, (dict, list, tuple)):  # str() would make a name of it
            raise TypeError
        return kind(value) if kind in (int, float, str) else value
    except UsageError:
        raise
    except (TypeError, ValueError):
        raise UsageError(f"{flag} {value!r}: expected {getattr(kind, '__name__', 'a value')}") from None


def refuse_blank(name, value):
    """Exit 2 when setting ``name`` is given an empty text (or a list holding one): ``--layers ""``
    from an unset shell variable or ``layers: ""`` in a config would otherwise read as "unset" and
    run with the default; leaving the flag out is how to ask for the default."""
    items = value if isinstance(value, (list, tuple)) else [value]
    require(not any(isinstance(v, str) and not v.strip() for v in items),
            f"{flag_name(name)}: empty value (leave the flag out for its default)")


def _to_bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    require(text in ("true", "false", "1", "0", "yes", "no"), f"expected true or false, got {value!r}")
    return text in ("true", "1", "yes")


class Settings:
    """Mixin of the settings dataclasses (use ``@dataclasses.dataclass(frozen=True)``).

    Subclasses override :meth:`check` to validate (raising :class:`~kcompress.errors.UsageError`
    through :func:`~kcompress.errors.require`); :meth:`from_dict` converts and validates.
    """

    @classmethod
    def options(cls):
        """The fields, in declaration order."""
        return dataclasses.fields(cls)

    @classmethod
    def names(cls):
        return tuple(f.name for f in cls.options())

    @classmethod
    def defaults(cls):
        return {f.name: f.default for f in cls.options()}

    @classmethod
    def sweepable(cls):
        """Names of the fields a sweep (or a search) may give several values."""
        return tuple(f.name for f in cls.options() if f.metadata.get("sweep"))

    @classmethod
    def from_dict(cls, values, strict=True):
        """Settings from ``values`` (unset or None entries keep the defaults), validated.

        ``strict``: a key that is not a field is a usage error (else it is ignored)."""
        fields = {f.name: f for f in cls.options()}
        unknown = sorted(set(values) - set(fields))
        require(not strict or not unknown, f"unknown setting(s) {', '.join(unknown)}")
        given = {k: convert(fields[k], v) for k, v in values.items() if k in fields and v is not None}
        return cls(**given).validate()

    def to_dict(self):
        return {f.name: _plain(getattr(self, f.name)) for f in self.options()}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes).validate()

    def validate(self):
        """Check every field (choices, then :meth:`check`); returns ``self``."""
        for f in self.options():
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            refuse_blank(f.name, value)
            if value is not None and choices and value not in choices:
                raise UsageError(f"unknown {flag_name(f.name)} {value!r} (one of {', '.join(map(str, choices))})")
        self.check()
        return self

    def check(self):
        """Subclasses: validate the values together (UsageError naming the flag)."""

    @classmethod
    def sweep_axes(cls, values):
        """Subclasses: ``{name: [values]}`` of sweep axes that are not plain fields (LC's
        ``--sweep kappa=0.01,0.02``); :func:`expand` adds them to the fields' axes."""
        return {}

    @classmethod
    def at_point(cls, values, point):
        """The settings values of one sweep combination ``point`` (``{axis: value}``)."""
        return {**values, **point}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def positive(value, flag, allow_zero=False):
    """Exit 2 unless ``value`` is a finite number > 0 (>= 0 with ``allow_zero``)."""
    ok = value is None or (math.isfinite(float(value)) and (float(value) >= 0 if allow_zero else float(value) > 0))
    require(ok, f"{flag} must be {'>= 0' if allow_zero else 'positive'}, got {value}")


def split_list(value):
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (a scalar -> ``[value]``)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def float_list(flag):
    """A parser of a comma list of numbers for ``flag`` (a tuple of floats)."""
    def parse(value):
        try:
            numbers = tuple(float(v) for v in split_list(value))
        except (TypeError, ValueError):
            raise UsageError(f"{flag} {value!r}: expected comma-separated numbers") from None
        require(numbers, f"{flag} {value!r}: expected comma-separated numbers")
        return numbers
    return parse


def expand(cls, values):
    """``[(label, settings)]``: one entry per combination of the sweepable fields given as lists
    (or comma strings) in ``values``, and of the settings class's own axes
    (:meth:`Settings.sweep_axes`); a single run has the label ``""``. Every combination is
    validated before the first one runs."""
    axes, fixed = {}, dict(values)
    for name in cls.sweepable():
        if values.get(name) is None:
            continue
        refuse_blank(name, values[name])
        items = split_list(values[name])
        require(items, f"{flag_name(name)} {values[name]!r}: no value in the list")
        if len(items) > 1:
            axes[name] = items
        fixed[name] = items[0] if items else None
    for name, value in fixed.items():
        require(name in cls.sweepable() or not (isinstance(value, str) and "," in value and _scalar(cls, name)),
                f"{flag_name(name)} {value!r}: a list is only allowed for {', '.join(cls.sweepable()) or 'no setting'}")
    axes.update(cls.sweep_axes(fixed))
    combos = itertools.product(*axes.values()) if axes else [()]
    runs = []
    for combo in combos:
        point = dict(zip(axes, combo))
        label = "-".join(f"{k}{v}" for k, v in point.items() if len(axes[k]) > 1)
        settings = cls.from_dict(cls.at_point(fixed, point))
        twin = next((other for other, done in runs if done == settings or other == label), None)
        require(twin is None, f"the sweep gives the same run twice ({twin} and {label}): "
                              "give each value once")
        runs.append((label, settings))
    return runs


def _scalar(cls, name):
    fields = {f.name: f for f in cls.options()}
    return name in fields and base_type(fields[name].type) in (int, float)
