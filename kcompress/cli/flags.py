"""Command-line flags generated from typed settings (:mod:`kcompress.core.settings`).

Each field of a settings dataclass becomes one flag: ``batch_size`` -> ``--batch-size``, its help
text with the real default appended once, booleans as ``--x`` / ``--no-x``, repeatable fields
(tuples without a parser) as repeated flags. Flags default to "not given" (``SUPPRESS``), so the
parsed namespace holds only what the user set; the settings class fills in its defaults and
validates, whether the values came from flags, a ``--config`` file or Python.
"""
import argparse

from kcompress.core.settings import base_type, flag_name


def shown(value):
    """A default as ``--help`` prints it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_option(group, field, default_note=None, sweeps=True):
    """Add the flag of settings ``field`` to ``group``."""
    meta, kind = field.metadata, base_type(field.type)
    text = meta["help"]
    if default_note:
        text += f" ({default_note})"
    elif field.default not in (None, ()) and not isinstance(field.default, bool):
        text += f" (default: {shown(field.default)})"
    if sweeps and meta.get("sweep") and kind in (int, float, str):
        text += "; a comma list sweeps"
    kwargs = dict(dest=field.name, default=argparse.SUPPRESS, help=text.replace("%", "%%"))
    if kind is bool:
        group.add_argument(flag_name(field.name), action=argparse.BooleanOptionalAction, **kwargs)
        return
    if kind is tuple and (meta.get("repeat") or not meta.get("parse")):
        kwargs["action"] = "append"
    choices = meta.get("choices")
    metavar = meta.get("metavar") or ("{" + ",".join(choices) + "}" if choices else None)
    group.add_argument(flag_name(field.name), metavar=metavar, **kwargs)


def add_settings(group, cls, skip=(), note=None, sweeps=True):
    """A flag for every command-line field of settings class ``cls`` not in ``skip``;
    ``note(field)`` may replace the default shown in the help; ``sweeps``: the command expands comma lists."""
    for field in cls.options():
        if field.metadata.get("cli", True) and field.name not in skip:
            add_option(group, field, note(field) if note else None, sweeps)

