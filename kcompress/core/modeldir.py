"""Model directories and output folders: written whole or not at all.

A model directory holds ``model.keras`` (the Keras model, no optimizer state), ``run.json``
(the run record: :class:`kcompress.core.record.RunRecord`) and plots. Outputs are built in a
hidden sibling folder and renamed into place only when complete, so a failure or a kill never
leaves a half-written directory under the real name.
"""
import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from kcompress.errors import UsageError, require

MODEL_FILE = "model.keras"
RUN_FILE = "run.json"


# A folder holding one of these was written by kcompress (a model directory, an export, a sweep, a
# search, a report): --overwrite may replace it. Anything else is the user's.
WRITTEN_BY_US = (RUN_FILE, "report.json", "search.json", "sweep.md", "report.md")


def check_out_dir(out, overwrite=False, sources=()):
    """Fail early (exit 2) if ``out`` exists and ``overwrite`` is not set, if ``--overwrite`` would replace
    a folder kcompress did not write (or a non-empty one of the user's), or if ``out`` is, holds or lies
    inside one of ``sources`` (the ``--from`` paths): the output must never eat its input."""
    require(out, "--out is required")
    out = Path(out)
    for source in sources:
        if isinstance(source, (str, Path)):
            check_apart(out, Path(source))
    require(not out.exists() or overwrite, f"--out {out} already exists (use --overwrite to replace it)")
    require(not out.exists() or out.is_dir(), f"--out {out} exists and is not a directory")
    if out.exists():
        theirs = [p for p in sorted(out.iterdir()) if not p.name.startswith(".")]
        require(not theirs or any((out / name).is_file() for name in WRITTEN_BY_US),
                f"--out {out} holds files kcompress did not write (e.g. {theirs[:1][0].name if theirs else ''}); "
                "--overwrite replaces only kcompress's outputs or an empty folder")
    return out


def check_apart(out, source):
    """Exit 2 if ``out`` is ``source``, lies inside it or holds it."""
    o, s = out.resolve(), source.resolve()
    require(o != s and s not in o.parents and o not in s.parents,
            f"--out {out} and --from {source} overlap (the same folder, or one inside the other): "
            "choose an --out apart from the model you compress")


@contextlib.contextmanager
def staged_dir(out, overwrite=False):
    """Yield a temporary folder beside ``out``; rename it to ``out`` if the block succeeds.

    Holds :func:`out_lock` throughout, and removes only the partial folders of dead
    processes: another run's staging folder is never deleted under it.
    """
    out = check_out_dir(out, overwrite)
    with out_lock(out):
        for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by a killed run
            if not _owner_alive(stale.name[len(f".{out.name}.partial-"):]):
                shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{_owner_tag()}-", dir=out.parent))
        except OSError as e:
            raise UsageError(f"--out {out}: cannot write in {out.parent} ({e.strerror})") from None
        tmp.chmod(0o755)
        try:
            yield tmp
            if out.exists():
                trash = out.with_name(f".{out.name}.old-{os.getpid()}")
                out.rename(trash)
                tmp.rename(out)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                tmp.rename(out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _owner_tag():
    """``HOST~PID`` of this process, for the names of its partial folders."""
    return f"{platform.node().replace('~', '_')}~{os.getpid()}"


def _owner_alive(name):
    """False only if ``name`` starts with an owner tag of a dead process on this host."""
    host, _, rest = name.partition("~")
    pid = rest.split("-")[0]
    if host != _owner_tag().split("~")[0] or not pid.isdigit():
        return True  # another host, or a name without a tag: leave it alone
    return _pid_alive(int(pid))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_HELD = {}  # lock path -> [open file, depth]: the locks this process holds


@contextlib.contextmanager
def out_lock(out):
    """Hold the lock of ``out`` (the file ``.NAME.lock`` beside it) for the block.

    A second process exits 2 at once, naming the holder (pid, host, command). The lock is
    an ``flock`` on the file, which the kernel drops when its holder dies, so a killed run's
    lock is taken over without guessing from pids. Re-entrant within one process.
    """
    out = Path(out)
    created = _make_parents(out)
    path = out.parent / f".{out.name}.lock"
    key = str(path.resolve())
    try:
        if key in _HELD:
            _HELD[key][1] += 1
        else:
            _HELD[key] = [_acquire(path, out), 1]
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield path
    finally:
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            f = _HELD.pop(key)[0]
            path.unlink(missing_ok=True)  # before unlocking: a waiter then retries on a new file
            f.close()
            if not out.exists():  # a refused or failed run leaves no folders behind
                _remove_empty(created)


def _make_parents(out):
    """Create the missing parents of ``out``; returns those created, deepest first (exit 2 if it cannot)."""
    missing = [p for p in out.parents if not p.exists()][::-1]
    try:
        for folder in missing:
            folder.mkdir()
    except OSError as e:
        _remove_empty(missing[::-1])
        raise UsageError(f"--out {out}: cannot create {e.filename or out.parent} ({e.strerror})") from None
    return missing[::-1]


def _remove_empty(folders):
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _acquire(path, out):
    import fcntl  # POSIX only: Windows takes the other branch

    while True:
        try:
            f = open(path, "a+")
        except OSError as e:
            raise UsageError(f"--out {out}: cannot write in {out.parent} ({e.strerror})") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise UsageError(f"--out {out} is being written by {holder} (lock {path}); "
                             "wait for it to finish or choose another --out") from None
        except BaseException:
            _drop_lock(f, path)
            raise
        if path.exists() and os.path.samestat(os.fstat(f.fileno()), os.stat(path)):
            break
        f.close()  # the file was unlinked by its last holder between our open and flock
    try:
        f.seek(0)
        stale = f.read().strip()
        if stale:
            print(f"kcompress: notice: taking over the lock {path} of {stale}, which is no longer running", file=sys.stderr)
        f.truncate(0)
        f.write(f"pid {os.getpid()} on {platform.node()}: {' '.join(sys.argv)}\n")
        f.flush()
    except BaseException:  # Ctrl-C or SIGTERM while taking it: leave no lock file behind
        _drop_lock(f, path)
        raise
    return f


def _drop_lock(f, path):
    """Remove the lock file ``path`` if no other process holds it (we may have just created it), then
    close ``f``: an interrupt while taking a lock leaves no ``.NAME.lock`` behind."""
    import fcntl  # POSIX only: Windows takes the other branch

    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if path.exists() and os.path.samestat(os.fstat(f.fileno()), os.stat(path)):
            path.unlink()
    except OSError:
        pass
    f.close()


def model_file_digest(folder):
    """SHA-1 of the bytes of ``folder``'s model file (None if it has none): a ``run.json`` records it, so
    that a model file replaced afterwards is noticed without loading it."""
    path = Path(folder) / MODEL_FILE
    return hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else None


def save_model(model, folder):
    """Save ``model`` as ``folder/model.keras`` (loaded back with ``compile=False``)."""
    model.save(Path(folder) / MODEL_FILE)


def is_model_dir(path):
    return Path(path, MODEL_FILE).is_file() and Path(path, RUN_FILE).is_file()


def load_model(folder):
    """Load the Keras model of a model directory with Keras' safe mode on (exit 2 if broken)."""
    from kcompress.backend import keras  # TensorFlow loads only when work needs it

    folder = Path(folder)
    require(folder.is_dir(), f"--from {folder}: no such directory")
    require(is_model_dir(folder), f"--from {folder}: not a model directory (needs {MODEL_FILE} and {RUN_FILE})")
    try:
        return keras.models.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as e:
        raise UsageError(f"--from {folder}: cannot load {MODEL_FILE} ({e.__class__.__name__}: {str(e)[:200]})") from None


def read_run(folder, where=None):
    """The JSON object of a model directory's ``run.json``, checked to be a kcompress record; exit 2 (messages
    starting with ``where``, default ``--from FOLDER``) if not. Code reads it typed: ``RunRecord.read``."""
    where, path = where or f"--from {folder}", Path(folder) / RUN_FILE
    require(path.is_file(), f"{where}: no {RUN_FILE}")
    try:
        run = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{where}: {RUN_FILE} is not valid JSON ({e})") from None
    except OSError as e:
        raise UsageError(f"{where}: {RUN_FILE} cannot be read ({e.strerror})") from None
    require(isinstance(run, dict), f"{where}: {path} holds a JSON {type(run).__name__}, not a kcompress run record")
    require(isinstance(run.get("settings"), dict), f"{where}: {path} has no settings (not written by kcompress)")
    return run


def write_json(path, obj):
    """Write ``obj`` as indented JSON (numpy scalars and arrays converted)."""
    Path(path).write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
