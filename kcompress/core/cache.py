"""Measurements kept between commands: small JSON results keyed by everything they depend on.

A measurement that is a pure function of its inputs (the float32 TFLite size of a model is one
of its architecture, its weights and the converter's version) is computed once and read back by
later commands: a reference folder whose weights were replaced after its ``run.json`` was
written (the LC toolkit's side-by-side run imports PyTorch weights that way) had its TFLite file
converted again by every command, 0.6 s of a ~25 s LC command.

The folder is ``$KCOMPRESS_MEASUREMENT_CACHE`` (default ``~/.cache/kcompress/measurements``;
empty: nothing kept), trimmed to :data:`LIMIT` bytes. A folder that cannot be read or written
means the measurement is made again, nothing else.
"""
import hashlib
import json
import os

LIMIT = 4 * 2**20  # bytes; an entry is ~100 bytes


def root():
    """kcompress's folder of caches (``$XDG_CACHE_HOME/kcompress``, default ``~/.cache/kcompress``)."""
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kcompress")


def folder():
    """The measurement cache's folder, or None when it is off."""
    return os.environ.get("KCOMPRESS_MEASUREMENT_CACHE", os.path.join(root(), "measurements")) or None


def remembered(kind, key, measure):
    """``measure()``, or what it returned for the same ``kind`` and ``key`` (a JSON-able value
    naming every input of the measurement) in an earlier command."""
    where = folder()
    if where is None:
        return measure()
    digest = hashlib.sha1(json.dumps([kind, key], sort_keys=True).encode()).hexdigest()
    path = os.path.join(where, f"{kind}-{digest}.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        pass
    value = measure()
    try:
        os.makedirs(where, exist_ok=True)
        with open(f"{path}.{os.getpid()}.tmp", "w") as f:
            json.dump(value, f)
        os.replace(f"{path}.{os.getpid()}.tmp", path)  # whole or not at all
        trim(where, LIMIT)
    except OSError:
        pass
    return value


def trim(where, limit):
    """Delete the least recently written files of ``where`` until the rest hold ``limit`` bytes."""
    total = 0
    for entry in sorted(os.scandir(where), key=lambda e: e.stat().st_mtime, reverse=True):
        total += entry.stat().st_size
        if total > limit:
            os.remove(entry.path)
